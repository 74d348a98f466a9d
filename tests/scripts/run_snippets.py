"""Run by tests/test_hub_cards.py: execute each model card's usage snippet (given as files) in a fresh namespace, in
this process's working directory, with HF_HUB_OFFLINE=1 and the hub ids put into the cache by the test. Prints one
line per snippet and "ok" at the end."""

import sys
from pathlib import Path

for path in sys.argv[1:]:
    code = Path(path).read_text()
    exec(compile(code, path, "exec"), {"__name__": "__main__"})  # noqa: S102 - the snippets are the test's subject
    print("ran", Path(path).name, flush=True)
print("ok")
