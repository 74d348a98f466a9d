import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import hf_dlm  # noqa: E402,F401  (registers the architectures)
from hf_dlm import DreamModel, LLaDAModelLM  # noqa: E402

from tests.utils.models import tiny_dream_config, tiny_llada_config  # noqa: E402

hf_logging.disable_progress_bar()
torch.set_num_threads(2)


@pytest.fixture
def tiny_llada() -> LLaDAModelLM:
    torch.manual_seed(0)
    return LLaDAModelLM(tiny_llada_config()).eval()


@pytest.fixture
def tiny_dream() -> DreamModel:
    torch.manual_seed(0)
    return DreamModel(tiny_dream_config()).eval()
