"""The head on the block (``logits_to_keep``) at the edges: ``generate`` against ``generate`` forced onto the whole
canvas's logits (an identity ``generation_logits_hook_func`` turns the restriction off) — empty, one-token, padded and
infilled prompts, every rule, CFG, caches, masks left by an earlier block, either sampler, the one-step path, a
subclass without ``logits_to_keep`` and a PEFT wrapper; and ``block_logits=False``, bit for bit the whole canvas's
tokens even where the block head's GEMM rounds a near-tie the other way."""

import pytest
import torch

from hf_dlm import DreamForMaskedLM, LLaDAModelLM
from tests.generation.test_block_logits import CLASSES, _model
from tests.utils.models import generate_padded_pair, tiny_dream_config, tiny_llada_config

def identity(step, x, logits):
    return logits


def _both(model, prompt, mask=None, seed=0, block_logits=True, **kwargs):
    kwargs = {"max_new_tokens": 16, "steps": 8, "block_length": 8, "stop_at_eos": False, **kwargs}
    block = model.generate(prompt, attention_mask=mask, generator=torch.Generator().manual_seed(seed),
                           block_logits=block_logits, **kwargs)
    whole = model.generate(prompt, attention_mask=mask, generator=torch.Generator().manual_seed(seed),
                           generation_logits_hook_func=identity, **kwargs)
    return block, whole


# ---------------------------------------------------------------------------------------------------------------
# Rounding: the block head's GEMM may take another kernel (by row count) and round a near-tie the other way;
# block_logits=False gives the whole canvas's tokens bit for bit
# ---------------------------------------------------------------------------------------------------------------

def _wide_llada(dtype, vocab=4096, width=1024):
    torch.manual_seed(0)
    config = tiny_llada_config(d_model=width, vocab_size=vocab, embedding_size=vocab, mask_token_id=vocab - 1,
                               pad_token_id=vocab - 2, eos_token_id=vocab - 3, bos_token_id=vocab - 4, n_layers=1,
                               n_heads=4, n_kv_heads=4, mlp_hidden_size=width, max_sequence_length=64)
    return LLaDAModelLM(config).eval().to(dtype)


def test_block_logits_off_decodes_the_whole_canvas_tokens_at_an_fp32_near_tie():
    """A threshold between the two computed confidences of one position (fp32, width 1024: fewer than 16 GEMM rows
    take another MKL kernel than 16 or more on AVX-512): the whole canvas's tokens with `block_logits=False`."""
    torch.set_num_threads(1)
    model = _wide_llada(torch.float32)
    prompt_length, new = 8, 8  # batch 1: the block head has 8 rows, the canvas head 16
    prompt = torch.randint(0, 4086, (1, prompt_length), generator=torch.Generator().manual_seed(0))
    x = torch.cat([prompt, torch.full((1, new), 4095)], 1)
    with torch.no_grad():
        full = model(x).logits[:, prompt_length:]
        kept = model(x, logits_to_keep=torch.arange(prompt_length, prompt_length + new)).logits
    if torch.equal(full, kept):
        pytest.skip("this machine's GEMM gives bitwise-equal rows for these shapes")
    conf_full = full.softmax(-1).max(-1).values[0]
    conf_kept = kept.softmax(-1).max(-1).values[0]
    best = int(conf_full.argmax())
    row = next(r for r in range(new) if r != best and conf_full[r] != conf_kept[r])
    threshold = max(conf_full[row].item(), conf_kept[row].item())
    block, whole = _both(model, prompt, max_new_tokens=new, steps=new, block_length=new, threshold=threshold,
                         remasking="low_confidence", block_logits=False)
    assert torch.equal(block, whole)


def test_block_logits_off_decodes_the_whole_canvas_tokens_at_a_bf16_near_tie():
    """Two head columns built to tie at one block position up to the GEMM's rounding (bf16, the checkpoints' dtype;
    the CPU GEMM switches kernels above 32 rows): greedy, one step, `block_logits=False` decodes the whole canvas's
    tokens."""
    torch.set_num_threads(1)
    vocab, prompt_length, new = 8192, 30, 8  # canvas head 38 rows, block head 8
    model = _wide_llada(torch.bfloat16, vocab=vocab)
    head = model.model.transformer.ff_out
    prompt = torch.randint(0, vocab - 10, (1, prompt_length), generator=torch.Generator().manual_seed(0))
    x = torch.cat([prompt, torch.full((1, new), vocab - 1)], 1)
    keep = torch.arange(prompt_length, prompt_length + new)
    with torch.no_grad():
        hidden = model.model(x).last_hidden_state
        full, kept = head(hidden)[:, prompt_length:], head(hidden[:, keep])
    differing = [(r, c) for _, r, c in (full != kept).nonzero().tolist() if c < vocab - 11]
    if not differing:
        pytest.skip("this machine's GEMM gives bitwise-equal rows for these shapes")
    weight = head.weight.data.clone()
    for row, col in differing:
        high = max(full[0, row, col].item(), kept[0, row, col].item())
        base = weight.clone()
        others = torch.ones(vocab, dtype=torch.bool)
        others[col] = False
        base[others] = (-8.0 if high > 0 else 8.0) * weight[col]  # every other token far below (exact scaling)
        h = hidden[0, prompt_length + row].float()
        for k in h.abs().argsort(descending=True)[:32].tolist():
            for step in (-1, 1, -2, 2, -3, 3, -4, 4):  # partner column: `col` with one weight moved a few ulps
                trial = base.clone()
                trial[col + 1] = weight[col]
                trial[col + 1, k] = (weight[col, k].view(torch.int16) + step).view(torch.bfloat16)
                head.weight.data = trial
                with torch.no_grad():
                    f, b = head(hidden)[0, prompt_length + row], head(hidden[:, keep])[0, row]
                if f[col + 1].item() == high == b[col + 1].item() and f[col].item() != b[col].item():
                    block, whole = _both(model, prompt, max_new_tokens=new, steps=1, block_length=new,
                                         block_logits=False)
                    assert torch.equal(block, whole)
                    return
        head.weight.data = weight
    pytest.skip("no near-tie could be built on this machine")


@pytest.mark.parametrize("cache", ["dual", "prefix"])
def test_dream_for_masked_lm_with_a_cache_decodes_dream_model_tokens(cache):
    """DreamForMaskedLM shifts its logits inside forward: its cached window starts one position early, as Dream's."""
    raw = _model("dream")
    aligned = DreamForMaskedLM(tiny_dream_config()).eval()
    aligned.load_state_dict(raw.state_dict())
    assert torch.equal(generate_padded_pair(raw, cache_implementation=cache),
                       generate_padded_pair(aligned, cache_implementation=cache))


# ---------------------------------------------------------------------------------------------------------------
# Edge cases checked: the same tokens as whole-canvas decoding
# ---------------------------------------------------------------------------------------------------------------

def _prompt(kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    if kind == "empty":
        return torch.zeros(1, 0, dtype=torch.long), None
    if kind == "one":
        return torch.randint(0, 90, (1, 1), generator=g), None
    if kind == "padded":
        prompt = torch.randint(0, 90, (2, 6), generator=g)
        mask = torch.ones_like(prompt)
        mask[1, :2] = 0
        return prompt, mask
    if kind == "infill-at-0":
        prompt = torch.randint(0, 90, (2, 7), generator=g)
        prompt[:, 0] = 95
        prompt[0, 3] = 95
        prompt[1, 5:] = 95
        return prompt, None
    if kind == "infill-padded":
        prompt = torch.randint(0, 90, (2, 7), generator=g)
        prompt[:, 3] = 95
        prompt[1, 2] = 95
        mask = torch.ones_like(prompt)
        mask[1, :2] = 0
        return prompt, mask
    raise ValueError(kind)


SETTINGS = [
    dict(), dict(temperature=0.9), dict(temperature=0.9, block_noise=True), dict(remasking="origin", temperature=0.8),
    dict(threshold=0.05, remasking="low_confidence"), dict(factor=1.5, remasking="low_confidence"), dict(remasking="margin"), dict(remasking="entropy"),
    dict(cfg_scale=1.0, temperature=0.7), dict(num_return_sequences=2, temperature=0.8),
    dict(min_new_tokens=6, suppress_tokens=[3, 4, 5]), dict(cache_implementation="dual"),
    dict(cache_implementation="prefix", cfg_scale=1.0), dict(cache_implementation="dual", cache_refresh_interval=2),
]


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("kind", ["empty", "one", "padded", "infill-at-0", "infill-padded"])
@pytest.mark.parametrize("settings", SETTINGS, ids=[",".join(f"{k}={v}" for k, v in s.items()) or "default"
                                                     for s in SETTINGS])
def test_edge_cases_decode_the_whole_canvas_tokens(name, kind, settings):
    torch.set_num_threads(1)
    prompt, mask = _prompt(kind)
    block, whole = _both(_model(name), prompt, mask, infill=kind.startswith("infill"), **settings)
    assert torch.equal(block, whole)


@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.9), dict(temperature=0.9, block_noise=True),
                                      dict(cache_implementation="dual")])
def test_random_remasking_draws_over_the_canvas(settings):
    prompt, mask = _prompt("padded")
    block, whole = _both(_model("llada"), prompt, mask, remasking="random", **settings)
    assert torch.equal(block, whole)


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("settings", [dict(), dict(cache_implementation="dual"), dict(cache_implementation="prefix"),
                                      dict(threshold=0.05, remasking="low_confidence"),
                                      dict(cfg_scale=1.0, cache_implementation="dual")])
def test_masks_left_in_an_earlier_block_are_still_decoded_alike(name, settings):
    """A proposed mask id is 'committed' and stays a mask: the next blocks' windows reach back to it."""
    model = _model(name)
    frequent = int(generate_padded_pair(model)[:, 6:].flatten().mode().values)
    with torch.no_grad():  # the mask id wins where the most frequent answer token did
        weight = model.get_output_embeddings().weight
        weight[95] = 1.01 * weight[frequent] if name == "llada" else 3.0 * weight[95]
    prompt, mask = _prompt("padded")
    block, whole = _both(model, prompt, mask, suppress_mask_token=False, **settings)
    assert bool((block[:, 6:] == 95).any())  # the case is exercised
    assert torch.equal(block, whole)


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("sampler", ["llada", "dream"])
def test_either_sampler_on_either_model(name, sampler):
    prompt, mask = _prompt("padded")
    block, whole = _both(_model(name), prompt, mask, sampler=sampler, temperature=0.5)
    assert torch.equal(block, whole)


@pytest.mark.parametrize("name", list(CLASSES))
@pytest.mark.parametrize("prompt_length", [0, 1, 6])
@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.8), dict(cfg_scale=1.0)])
def test_one_step_generator_keeps_the_answer_logits_alike(name, prompt_length, settings):
    """The one-step path takes no hook: compare with `logits_to_keep` switched off on the instance."""
    from hf_dlm.generation.initial_state import DiMOInitialState

    model = _model(name)
    DiMOInitialState(r_init=0.6, vocab_size=90, embedding_noise_std=0.1).attach_to(model, max_new_tokens=16)
    prompt = torch.randint(0, 90, (2, prompt_length), generator=torch.Generator().manual_seed(1))
    kwargs = dict(max_new_tokens=16, steps=1, block_length=16, stop_at_eos=False, **settings)
    block = model.generate(prompt, generator=torch.Generator().manual_seed(3), **kwargs)
    model._supports_logits_to_keep = lambda: False
    assert torch.equal(block, model.generate(prompt, generator=torch.Generator().manual_seed(3), **kwargs))


class _ForwardWithoutLogitsToKeep(LLaDAModelLM):
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def test_a_subclass_whose_forward_lacks_logits_to_keep_gets_the_whole_canvas():
    torch.manual_seed(0)
    model = _ForwardWithoutLogitsToKeep(tiny_llada_config()).eval()
    assert not model._supports_logits_to_keep()
    prompt, mask = _prompt("padded")
    block, whole = _both(model, prompt, mask, cache_implementation="prefix")
    assert torch.equal(block, whole)


def test_a_peft_wrapped_model_decodes_alike():
    peft = pytest.importorskip("peft")
    model = _model("dream")
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules=["q_proj", "lm_head"],
                                                         init_lora_weights=False)).eval()
    prompt, mask = _prompt("padded")
    block, whole = _both(wrapped, prompt, mask)
    assert torch.equal(block, whole)
