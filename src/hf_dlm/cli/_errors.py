"""Exit codes of the ``hf-dlm`` command and how an error becomes one line of stderr with one of them.

0 success; 2 bad input (arguments, config files, folders that are not what the verb needs); 3 a folder, file, model
or hub id that cannot be found; 4 the Hub refused the request or could not be reached; 1 anything else.
"""

from __future__ import annotations

import os
import sys

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_HUB = 0, 1, 2, 3, 4
MAX_MESSAGE = 1000  # characters of one error line

# exception class names (anywhere in the MRO) that mean "the network failed", from the HTTP stacks the Hub client
# uses (httpx / httpcore, requests / urllib3) and the standard library
_NETWORK_ERRORS = {"ConnectError", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "TimeoutException",
                   "NetworkError", "TransportError", "ProxyError", "RemoteProtocolError", "ConnectionError",
                   "NewConnectionError", "MaxRetryError", "gaierror", "ConnectionRefusedError",
                   "ConnectionResetError", "ConnectionAbortedError", "TimeoutError"}


class CLIError(Exception):
    """An error the command reports as one line with a given exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """``text`` with its whitespace (line breaks included) collapsed, cut at :data:`MAX_MESSAGE` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during, outermost first."""
    seen: list[BaseException] = []
    while error is not None and all(error is not other for other in seen):
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def is_network_error(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) is a failure to reach a server."""
    for link in _chain(error):
        names = _names(link)
        if "OfflineModeIsEnabled" in names:
            return False
        if names & _NETWORK_ERRORS:
            return True
    return False


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in {"1", "true", "yes", "on"}


def classify(error: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception a verb raised."""
    if isinstance(error, CLIError):
        return error.code, one_line(str(error))
    chain = _chain(error)
    names = set().union(*(_names(link) for link in chain))
    message = str(error) or type(error).__name__
    if "GatedRepoError" in names or "DisabledRepoError" in names:
        return EXIT_HUB, one_line(f"the Hub refused access: {message}")
    if is_network_error(error):  # first: huggingface_hub reports a failed connection as a (local) entry not found
        return EXIT_HUB, one_line(f"the Hub at {_hub_endpoint()} could not be reached: {_innermost(error)}")
    if names & {"RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
                "RemoteEntryNotFoundError"}:
        return EXIT_NOT_FOUND, one_line(message)
    if "LocalEntryNotFoundError" in names or "OfflineModeIsEnabled" in names:
        return EXIT_NOT_FOUND, one_line(message)
    if "HfHubHTTPError" in names:
        return EXIT_HUB, one_line(f"the Hub refused the request: {message}")
    if isinstance(error, FileNotFoundError):
        return EXIT_NOT_FOUND, one_line(message)
    if isinstance(error, (ValueError, TypeError, NotADirectoryError, IsADirectoryError, PermissionError,
                          FileExistsError, UnicodeDecodeError)):
        return EXIT_BAD_INPUT, one_line(message)
    return EXIT_FAILURE, one_line(f"unexpected error: {type(error).__name__}: {message} "
                                  "(run again with --debug for the traceback)")


def _innermost(error: BaseException) -> str:
    """The message of the deepest network exception in the chain (``[Errno 111] Connection refused``)."""
    for link in reversed(_chain(error)):
        if _names(link) & _NETWORK_ERRORS:
            return str(link) or type(link).__name__
    return str(error)


def report(prog: str, message: str) -> None:
    """Write the one error line."""
    print(f"{prog}: {message}", file=sys.stderr)


__all__ = ["CLIError", "EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_HUB", "EXIT_NOT_FOUND", "EXIT_OK", "classify",
           "is_network_error", "one_line", "report"]
