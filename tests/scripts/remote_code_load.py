"""Run by tests/test_hub_cards.py on a saved LLaDA folder: what a user without the hf-dlm plugin sees.

1. hf_dlm not importable: loading asks for trust_remote_code; with it, transformers names the package to install.
2. hf_dlm installed but not imported: trust_remote_code=True loads our class through hf_dlm_auto.py, with the same
   logits as loading it with the plugin. Prints "ok"."""

import sys
from pathlib import Path

import torch

folder = sys.argv[1]
package_roots = [p for p in sys.path if (Path(p or ".") / "hf_dlm" / "__init__.py").is_file()]
for root in package_roots:
    sys.path.remove(root)
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

try:
    AutoConfig.from_pretrained(folder)
except ValueError as error:
    assert "trust_remote_code=True" in str(error), error
else:
    raise AssertionError("loading without the plugin and without trust_remote_code should fail")
try:
    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
except ImportError as error:
    assert "hf_dlm" in str(error) and "pip install" in str(error), error
else:
    raise AssertionError("loading without the plugin should name the package to install")
print("without the plugin: told to install hf_dlm", flush=True)

sys.path[:0] = package_roots
remote = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
import hf_dlm  # noqa: E402

assert isinstance(remote, hf_dlm.LLaDAModelLM), type(remote)
local = hf_dlm.LLaDAModelLM.from_pretrained(folder).eval()
ids = torch.randint(0, 90, (2, 10), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    assert torch.equal(remote(ids).logits, local(ids).logits)
print("ok")
