"""Test fixture: a small in-memory Hub server on 127.0.0.1 speaking the subset of the Hugging Face Hub HTTP API that
``push_to_hub`` and a read-back by id use (no Hub server that accepts pushes exists on PyPI).

Endpoints: ``POST /api/repos/create``, ``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}``
(always ``uploadMode: regular``), ``POST /api/models/{repo}/commit/{rev}`` (NDJSON with base64 file contents),
``GET /api/models/{repo}[/revision/{rev}]``, ``GET /api/models/{repo}/tree/{rev}[/{path}]`` and
``GET|HEAD /{repo}/resolve/{rev}/{path}``. Model repos, and Spaces for the preupload and commit calls
(``/api/spaces/...``; ``space_sdk`` is recorded in ``repo.sdk``); one branch history per repo; no authentication.
Start it with ``HubServer().start()``; point a process at it with ``HF_ENDPOINT=server.url`` (set before
``huggingface_hub`` is imported).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class _Repo:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.commits: list[str] = [hashlib.sha1(b"initial").hexdigest()]
        self.commit_files: list[list[str]] = [[]]  # the paths each commit added or changed
        self.type: str = "model"  # or "space"
        self.sdk: str | None = None  # a Space's sdk

    @property
    def head(self) -> str:
        return self.commits[-1]


class HubServer:
    """The server and its state: ``repos`` maps ``org/name`` to its files, its commit ids and the paths each commit
    wrote (``commit_files``)."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # ------------------------------------------------------------------ handlers
    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                return None

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, payload, headers: dict | None = None):
                self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json",
                                                                   **(headers or {})})

            def _missing(self, code: str, head: bool = False):
                self._send(404, json.dumps({"error": code}).encode(),
                           {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"},
                           head=head)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def do_POST(self) -> None:  # noqa: N802
                path = unquote(urlparse(self.path).path)
                body = self._body()
                if path == "/api/repos/create":
                    data = json.loads(body or b"{}")
                    repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                    with server.lock:
                        existed = repo_id in server.repos
                        repo = server.repos.setdefault(repo_id, _Repo())
                        if not existed:
                            repo.type = data.get("type") or "model"
                            repo.sdk = data.get("sdk")
                    if existed and not data.get("exist_ok", True):
                        return self._json(409, {"error": "You already created this model repo"})
                    return self._json(200, {"url": f"{server.url}/{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                match = re.fullmatch(r"/api/(?:models|spaces)/(.+)/preupload/([^/]+)", path)
                if match:
                    files = json.loads(body)["files"]
                    return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in files]})
                match = re.fullmatch(r"/api/(?:models|spaces)/(.+)/commit/([^/]+)", path)
                if match:
                    return self._commit(match.group(1), body)
                return self._missing("EntryNotFound")

            def _commit(self, repo_id: str, body: bytes) -> None:
                with server.lock:
                    repo = server.repos.get(repo_id)
                    if repo is None:
                        return self._missing("RepoNotFound")
                    touched = []
                    for line in body.splitlines():
                        if not line.strip():
                            continue
                        item = json.loads(line)
                        value = item.get("value", {})
                        if item.get("key") == "file":
                            content = value["content"]
                            touched.append(value["path"])
                            repo.files[value["path"]] = (base64.b64decode(content)
                                                         if value.get("encoding") == "base64" else content.encode())
                        elif item.get("key") in ("deletedFile", "deletedFolder"):
                            prefix = value["path"]
                            folder = prefix.rstrip("/") + "/"
                            for name in [n for n in repo.files if n == prefix or n.startswith(folder)]:
                                del repo.files[name]
                        elif item.get("key") == "lfsFile":
                            return self._json(400, {"error": "this test server accepts regular uploads only"})
                    digest = hashlib.sha1(repo.head.encode())
                    for name in sorted(repo.files):
                        digest.update(name.encode() + hashlib.sha1(repo.files[name]).digest())
                    repo.commits.append(digest.hexdigest())
                    repo.commit_files.append(sorted(touched))
                    oid = repo.head
                return self._json(200, {"commitUrl": f"{server.url}/{repo_id}/commit/{oid}", "commitOid": oid,
                                        "pullRequestUrl": None})

            def _get(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                match = re.fullmatch(r"/api/models/([^/]+(?:/[^/]+)?)(?:/revision/([^/]+))?", path)
                if match and "/tree/" not in path:
                    repo = server.repos.get(match.group(1))
                    if repo is None:
                        return self._missing("RepoNotFound", head)
                    siblings = [{"rfilename": n} for n in sorted(repo.files)]
                    return self._json(200, {"id": match.group(1), "modelId": match.group(1), "sha": repo.head,
                                            "private": False, "siblings": siblings})
                match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?", path)
                if match:
                    repo = server.repos.get(match.group(1))
                    if repo is None:
                        return self._missing("RepoNotFound", head)
                    prefix = (match.group(3) or "").strip("/")
                    entries = [{"type": "file", "path": n, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                               for n, b in sorted(repo.files.items())
                               if not prefix or n.startswith(prefix + "/")]
                    return self._json(200, entries)
                match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if match:
                    repo = server.repos.get(match.group(1))
                    if repo is None:
                        return self._missing("RepoNotFound", head)
                    content = repo.files.get(match.group(3))
                    if content is None:
                        return self._missing("EntryNotFound", head)
                    etag = hashlib.sha1(content).hexdigest()
                    return self._send(200, content, {"ETag": f'"{etag}"', "X-Repo-Commit": repo.head,
                                                     "Content-Type": "application/octet-stream"}, head=head)
                return self._missing("EntryNotFound", head)

            def do_GET(self) -> None:  # noqa: N802
                self._get(head=False)

            def do_HEAD(self) -> None:  # noqa: N802
                self._get(head=True)

        return Handler
