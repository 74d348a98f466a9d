"""The head runs on the block only: ``forward(..., logits_to_keep=)`` (transformers' argument) returns exactly the
rows of the full logits, and ``generate()`` asks for the positions a pass may commit — the same tokens as with the
whole canvas's logits, which the authors' loops compute (and which Dream's hooks still receive)."""

import pytest
import torch

from hf_dlm import DreamForMaskedLM, DreamModel, LLaDAModelLM
from hf_dlm.generation.configuration import MaskedDiffusionGenerationConfig
from hf_dlm.generation.steps import ProposalMasks, llada_step
from tests.utils.models import generate_padded_pair, head_rows, tiny_dream_config, tiny_llada_config

CLASSES = {"llada": (LLaDAModelLM, tiny_llada_config), "dream": (DreamModel, tiny_dream_config),
           "dream-mlm": (DreamForMaskedLM, tiny_dream_config)}


def _model(name):
    cls, config = CLASSES[name]
    torch.manual_seed(0)
    return cls(config()).eval()


def _padded_batch():
    x = torch.randint(0, 90, (2, 20), generator=torch.Generator().manual_seed(0))
    x[:, 12:] = 95
    mask = torch.ones_like(x)
    mask[1, :3] = 0
    return x, mask


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("keep", [5, torch.tensor([0, 3, 12, 19]), torch.arange(11, 20)], ids=["last5", "picked", "block"])
def test_kept_logits_are_the_rows_of_the_full_logits(name, keep):
    model = _model(name)
    x, mask = _padded_batch()
    with torch.no_grad():
        full = model(x, attention_mask=mask).logits
        kept = model(x, attention_mask=mask, logits_to_keep=keep).logits
    rows = torch.arange(15, 20) if isinstance(keep, int) else keep
    assert kept.shape == (2, len(rows), full.shape[-1])
    torch.testing.assert_close(kept, full[:, rows], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_logits_to_keep_zero_or_beyond_the_length_keeps_everything(name):
    model = _model(name)
    x, mask = _padded_batch()
    with torch.no_grad():
        full = model(x, attention_mask=mask).logits
        assert torch.equal(model(x, attention_mask=mask, logits_to_keep=0).logits, full)
        assert torch.equal(model(x, attention_mask=mask, logits_to_keep=50).logits, full)


@pytest.mark.parametrize("value, match", [
    (-1, "non-negative int"), (True, "non-negative int"), (2.5, "non-negative int"),
    (torch.ones(2, 3, dtype=torch.long), "1-D integer"), (torch.tensor([1.0, 2.0]), "1-D integer"),
    (torch.tensor([3, 20]), r"must lie in \[0, 20\)"), (torch.tensor([-1, 4]), r"got -1…4"),
])
def test_bad_logits_to_keep_is_refused_by_name(value, match):
    model = _model("llada")
    x, _ = _padded_batch()
    with pytest.raises(ValueError, match=match):
        model(x, logits_to_keep=value)


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_labels_with_a_selection_are_refused(name):
    model = _model(name)
    x, _ = _padded_batch()
    labels = torch.full_like(x, -100)
    labels[:, 12] = 7
    with pytest.raises(ValueError, match="logits_to_keep=0"):
        model(x, labels=labels, logits_to_keep=4)


@pytest.mark.parametrize("name, cache, expected", [
    ("llada", None, [8] * 8), ("dream", None, [9] * 8),
    ("llada", "dual", [8] * 8), ("llada", "prefix", [8] * 8), ("dream", "prefix", [9] * 8),
])
def test_generate_runs_the_head_on_the_block(name, cache, expected):
    """Uncached passes and refreshes feed the 22-position canvas but project only the block (Dream: one position
    earlier, its logits at i predict i + 1); the prefix cache's window carries the suffix, not its logits."""
    model = _model(name)
    rows = head_rows(model)
    generate_padded_pair(model, cache_implementation=cache)
    assert rows == expected


@pytest.mark.parametrize("hook", ["generation_logits_hook_func", "generation_tokens_hook_func"])
def test_hooks_receive_the_whole_canvas_logits(hook):
    model = _model("dream")
    rows = head_rows(model)
    seen = []

    def logits_hook(step, x, logits):
        seen.append(logits.shape[1])
        return logits

    def tokens_hook(step, x, logits):
        if logits is not None:
            seen.append(logits.shape[1])
        return x

    generate_padded_pair(model, **{hook: logits_hook if hook == "generation_logits_hook_func" else tokens_hook})
    assert rows == [22] * 8 and seen == [22] * 8


SETTINGS = [
    dict(),
    dict(temperature=0.8, top_p=0.9),
    dict(threshold=0.05, remasking="low_confidence"),
    dict(cfg_scale=1.5, temperature=0.5),
    dict(block_length=16, steps=16),
    dict(cache_implementation="dual"),
    dict(cache_implementation="prefix", factor=1.5, remasking="low_confidence"),
]


@pytest.mark.parametrize("name", ["llada", "dream"])
@pytest.mark.parametrize("settings", SETTINGS, ids=[",".join(f"{k}={v}" for k, v in s.items()) or "default"
                                                     for s in SETTINGS])
def test_block_logits_decode_the_whole_canvas_tokens(name, settings):
    """The same tokens as decoding from the whole canvas's logits (forced here by an identity logits hook), for both
    sampler families (Dream's default is `origin`, random draws included)."""
    model = _model(name)
    block = generate_padded_pair(model, **settings)
    whole = generate_padded_pair(model, generation_logits_hook_func=lambda step, x, logits: logits, **settings)
    assert torch.equal(block, whole)


def test_the_logits_window_reaches_back_to_an_uncommitted_earlier_mask():
    """A mask left before the block (e.g. by Dream's random `origin` reveal) is still a candidate: the window
    starts there (one earlier for Dream)."""
    candidates = torch.zeros(2, 30, dtype=torch.bool)
    candidates[:, 20:28] = True
    assert _model("llada")._logits_window(candidates, 20, 28) == (20, 28)
    assert _model("dream")._logits_window(candidates, 20, 28) == (19, 28)
    candidates[1, 13] = True
    assert _model("llada")._logits_window(candidates, 20, 28) == (13, 28)
    assert _model("dream")._logits_window(candidates, 20, 28) == (12, 28)


def test_a_step_refuses_logits_that_miss_a_candidate():
    config = MaskedDiffusionGenerationConfig(mask_token_id=95, steps=4, max_new_tokens=4)
    x = torch.full((1, 10), 95)
    candidates = x == 95
    with pytest.raises(RuntimeError, match=r"\[2, 10\)"):
        llada_step(torch.zeros(1, 8, 100), x, candidates, torch.tensor([1]), config, ProposalMasks([], None, [], 0),
                   None, offset=2)


@pytest.mark.parametrize("name, expected", [("llada", 22), ("dream", 22)])
def test_block_logits_off_projects_the_whole_canvas_and_is_saved(name, expected, tmp_path):
    """`block_logits=False` (the authors' whole-canvas head, bit for bit) is a saved generation setting."""
    model = _model(name)
    rows = head_rows(model)
    generate_padded_pair(model, block_logits=False)
    assert rows == [expected] * 8
    model.generation_config.block_logits = False
    model.save_pretrained(tmp_path)
    assert type(model).from_pretrained(tmp_path).generation_config.block_logits is False
    with pytest.raises(ValueError, match="`block_logits` must be True or False"):
        generate_padded_pair(model, block_logits="no")
