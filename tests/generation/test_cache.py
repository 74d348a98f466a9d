"""Fast-dLLM's key/value cache for masked diffusion (arXiv 2505.22618, Sec. 3.2) and its factor rule (Sec. 3.3):
the cache's K/V against a hand-computed forward, cached windows against full passes, cached decoding with a refresh
every pass against uncached decoding token for token, and the refusals."""

import pathlib

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from hf_dlm import DreamModel, LLaDAModelLM
from hf_dlm.generation.cache import MaskedDiffusionCache
from hf_dlm.generation.sampling import select_by_factor
from tests.utils.models import CallCounter, tiny_dream_config, tiny_llada_config, tiny_quantized_llada

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "hf_dlm"


def _canvas(batch=2, length=40, pad=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 90, (batch, length), generator=g)
    x[:, 24:] = 95  # a masked suffix, as during decoding
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[1, :pad] = 0
    return x, mask


def _models():
    torch.manual_seed(0)
    return [LLaDAModelLM(tiny_llada_config()).eval(), DreamModel(tiny_dream_config()).eval()]


@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
def test_refresh_stores_the_keys_and_values_of_a_full_forward(index):
    """At a refresh the cache holds, per layer, RoPE(k_proj(norm(h))) and v_proj(norm(h)) at the canvas positions
    (padding skipped), computed here by hand from the layer inputs of a plain forward."""
    model = _models()[index]
    x, mask = _canvas()
    cache = MaskedDiffusionCache("dual")
    with torch.no_grad():
        hidden = model(x, attention_mask=mask, output_hidden_states=True).hidden_states
        model(x, attention_mask=mask, cache=cache)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    layers = model.model.transformer.blocks if index == 0 else model.model.layers
    rotary = model.model.rotary_emb
    for i, layer in enumerate(layers):
        norm = layer.attn_norm if index == 0 else layer.input_layernorm
        attn = layer if index == 0 else layer.self_attn
        h = norm(hidden[i])
        k = attn.k_proj(h).view(2, 40, -1, attn.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(2, 40, -1, attn.head_dim).transpose(1, 2)
        freqs = positions[..., None].float() * rotary.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        _, k = apply_rotary_pos_emb(k, k, emb.cos(), emb.sin())
        torch.testing.assert_close(cache.layers[i].keys, k, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cache.layers[i].values, v, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
@pytest.mark.parametrize("window", [(24, 32), (24, 40), (3, 9)], ids=["dual", "prefix", "inner"])
def test_a_window_on_a_fresh_cache_equals_the_full_forward(index, window):
    """Fed a window with the cache of the same canvas, the model returns the full forward's logits there: the
    positions (and RoPE) of the cached window follow the canvas, padding included."""
    model = _models()[index]
    x, mask = _canvas()
    start, end = window
    cache = MaskedDiffusionCache("dual")
    with torch.no_grad():
        full = model(x, attention_mask=mask).logits
        model(x, attention_mask=mask, cache=cache)
        part = model(x[:, start:end], attention_mask=mask, cache=cache,
                     cache_position=torch.arange(start, end)).logits
        shifted = model(x[:, start:end], attention_mask=mask, cache=cache, cache_position=torch.arange(start, end),
                        position_ids=torch.arange(end - start).expand(2, -1)).logits
    torch.testing.assert_close(part, full[:, start:end], atol=1e-5, rtol=1e-5)
    assert (shifted - full[:, start:end]).abs().max() > 1e-3  # positions matter: the window is not at 0


def test_a_stale_cache_is_approximate():
    """After the canvas changes left of the window, the cached pass differs from a full pass (the approximation
    Fast-dLLM makes), and a refresh makes them equal again."""
    model = _models()[0]
    x, mask = _canvas()
    cache = MaskedDiffusionCache("dual")
    with torch.no_grad():
        model(x, attention_mask=mask, cache=cache)
        x2 = x.clone()
        x2[:, 10:14] = 7
        stale = model(x2[:, 24:32], attention_mask=mask, cache=cache, cache_position=torch.arange(24, 32)).logits
        full = model(x2, attention_mask=mask).logits
        assert (stale - full[:, 24:32]).abs().max() > 1e-4
        model(x2, attention_mask=mask, cache=cache)
        fresh = model(x2[:, 24:32], attention_mask=mask, cache=cache, cache_position=torch.arange(24, 32)).logits
    torch.testing.assert_close(fresh, full[:, 24:32], atol=1e-5, rtol=1e-5)


SETTINGS = [
    dict(),
    dict(remasking="random", temperature=0.8),
    dict(remasking="margin", temperature=0.7, top_p=0.9),
    dict(remasking="entropy"),
    dict(threshold=0.05),
    dict(factor=1.5),
    dict(cfg_scale=1.5, temperature=0.5),
]


def _generate(model, prompt, mask, **kwargs):
    kwargs = {"max_new_tokens": 16, "steps": 8, "block_length": 8, "return_dict_in_generate": True,
              "stop_at_eos": False, **kwargs}
    return model.generate(prompt, attention_mask=mask, generator=torch.Generator().manual_seed(3), **kwargs)


# `random` remasking is LLaDA's rule only (Dream's sampler refuses it)
CASES = [(index, settings) for index in (0, 1) for settings in SETTINGS
         if not (index == 1 and settings.get("remasking") == "random")]


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("index, settings", CASES,
                         ids=[("llada-" if i == 0 else "dream-") + (",".join(s) or "default") for i, s in CASES])
def test_refresh_every_pass_equals_uncached_decoding(index, settings, cache):
    model = _models()[index]
    if index == 1 and ("threshold" in settings or "factor" in settings):
        settings = {**settings, "remasking": "low_confidence"}  # Dream's default `origin` has no confidence
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0  # a left-padded batch
    plain = _generate(model, prompt, mask, **settings)
    cached = _generate(model, prompt, mask, cache_implementation=cache, cache_refresh_interval=1, **settings)
    assert torch.equal(plain.sequences, cached.sequences)
    assert plain.nfe == cached.nfe


@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
def test_dream_origin_and_llada_blocks_with_refresh_every_pass(index):
    model = _models()[index]
    prompt = torch.randint(0, 90, (1, 5), generator=torch.Generator().manual_seed(2))
    settings = dict(remasking="origin", temperature=0.9, block_length=16) if index else dict(block_length=4)
    plain = _generate(model, prompt, None, **settings)
    cached = _generate(model, prompt, None, cache_implementation="dual", cache_refresh_interval=1, **settings)
    assert torch.equal(plain.sequences, cached.sequences)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
def test_approximate_cache_decodes_every_position_with_the_same_passes(index, cache):
    """Without refreshes inside a block, the cache feeds windows: each block has one full pass and the rest are
    windowed, the pass count is the schedule's and no mask is left."""
    model = _models()[index]
    counter = CallCounter(model)
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(1))
    out = _generate(model, prompt, None, cache_implementation=cache)
    assert out.nfe == 8 == counter.calls
    assert not (out.sequences[:, 6:] == 95).any()
    assert out.tokens_per_second > 0 and out.tokens_per_forward == 2.0 and out.seconds > 0


def test_window_lengths_per_mode():
    """Dual feeds the block alone, prefix the block and the suffix; Dream's windows start one position earlier
    (its logits at i predict token i + 1)."""
    seen = []
    for index, cache in [(0, "dual"), (0, "prefix"), (1, "dual")]:
        model = _models()[index]
        lengths = []
        model.register_forward_pre_hook(lambda m, args, kw: lengths.append(kw["input_ids"].shape[1]),
                                        with_kwargs=True)
        _generate(model, torch.randint(0, 90, (1, 6)), None, cache_implementation=cache)
        seen.append(lengths)
    assert seen[0] == [22, 8, 8, 8, 22, 8, 8, 8]
    assert seen[1] == [22, 16, 16, 16, 22, 8, 8, 8]
    assert seen[2] == [22, 9, 9, 9, 22, 9, 9, 9]


def test_quantized_model_decodes_with_the_cache():
    model = tiny_quantized_llada()
    prompt = torch.randint(0, 90, (1, 6), generator=torch.Generator().manual_seed(1))
    plain = _generate(model, prompt, None)
    refreshed = _generate(model, prompt, None, cache_implementation="dual", cache_refresh_interval=1)
    assert torch.equal(plain.sequences, refreshed.sequences)
    approximate = _generate(model, prompt, None, cache_implementation="dual")
    assert not (approximate.sequences == 95).any()


def test_streamer_receives_drafts_and_blocks_with_the_cache():
    class Recorder:
        def __init__(self):
            self.puts, self.drafts, self.ended = [], [], False

        def put(self, value):
            self.puts.append(value)

        def put_draft(self, value):
            self.drafts.append(value)

        def end(self):
            self.ended = True

    model = _models()[0]
    streamer = Recorder()
    prompt = torch.randint(0, 90, (1, 6), generator=torch.Generator().manual_seed(1))
    out = model.generate(prompt, max_new_tokens=16, steps=8, block_length=8, cache_implementation="prefix",
                         streamer=streamer, stop_at_eos=False)
    assert len(streamer.drafts) == 8 and len(streamer.puts) == 3 and streamer.ended
    assert torch.equal(torch.cat([streamer.puts[1], streamer.puts[2]]), out[0, 6:])


def test_generation_config_saves_the_cache(tmp_path):
    model = _models()[0]
    model.generation_config.update(cache_implementation="dual", cache_refresh_interval=4, factor=1.0)
    model.save_pretrained(tmp_path)
    loaded = LLaDAModelLM.from_pretrained(tmp_path)
    assert loaded.generation_config.cache_implementation == "dual"
    assert loaded.generation_config.cache_refresh_interval == 4 and loaded.generation_config.factor == 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(cache_implementation="static"), "cache_implementation"),
    (dict(cache_implementation="dual", use_cache=False), "use_cache"),
    (dict(cache_refresh_interval=0), "cache_refresh_interval"),
    (dict(factor=1.0, threshold=0.9), "factor"),
    (dict(factor=1.0, remasking="margin"), "low_confidence"),
    (dict(factor=-1.0), "factor"),
    (dict(cache_implementation="dual", cache_config={"max_cache_len": 8}), "cache_config"),
])
def test_bad_cache_and_factor_settings_are_refused_by_name(kwargs, match):
    model = _models()[0]
    with pytest.raises(ValueError, match=match):
        model.generate(torch.randint(0, 90, (1, 4)), max_new_tokens=8, steps=4, **kwargs)


def test_ngram_model_refuses_the_cache():
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(ngram_embedding={"max_n": 3, "num_tables": 2})).eval()
    with pytest.raises(ValueError, match="N-gram"):
        model.generate(torch.randint(0, 90, (1, 4)), max_new_tokens=8, steps=4, cache_implementation="dual")


def test_window_without_cache_or_with_another_cache_is_refused():
    from transformers import DynamicCache

    model = _models()[0]
    x, mask = _canvas()
    with pytest.raises(ValueError, match="cache_position"):
        model(x[:, :4], cache_position=torch.arange(4))
    with pytest.raises(TypeError, match="MaskedDiffusionCache"):
        model(x, cache=DynamicCache())
    cache = MaskedDiffusionCache("dual")
    with pytest.raises(RuntimeError, match="refresh"):
        model(x[:, :4], cache=cache, cache_position=torch.arange(4))
    model(x, attention_mask=mask, cache=cache)
    with pytest.raises(ValueError, match="attention_mask"):
        model(x[:, :4], attention_mask=mask[:, :4], cache=cache, cache_position=torch.arange(4))


def test_factor_rule_by_hand():
    """Fast-dLLM's bounds 1 − f/(n + 1): with f = 1, 0.5 for the 1st (always taken), 2/3 for the 2nd, 3/4 for the
    3rd, 4/5 for the 4th."""
    inf = float("-inf")
    confidence = torch.tensor([[0.9, 0.7, 0.72, 0.1, inf],   # sorted .9 .72 .7 .1: the 3rd (.7 < .75) fails → 2
                               [0.3, inf, 0.2, inf, inf],    # .3 .2: only the last fails → both (the authors' rule)
                               [0.99, 0.95, 0.9, 0.85, inf],  # none fails → all 4
                               [0.1, 0.6, 0.5, 0.05, 0.01]])  # .6 .5 .1 ...: 2nd (.5 < 2/3) fails → 1
    taken = select_by_factor(confidence, 1.0)
    assert taken.tolist() == [[True, False, True, False, False], [True, False, True, False, False],
                              [True, True, True, True, False], [False, True, False, False, False]]
    # f = 4: bounds −1/3, 0, 1/5, 1/3 for n = 2…5; row 4 sorted .6 .5 .1 .05 .01 fails at the 4th (.05 < .2) → 3
    assert select_by_factor(confidence, 4.0)[3].tolist() == [True, True, True, False, False]


def test_no_modeling_file_has_a_second_copy():
    """One modeling file per architecture: the cache lives in the shared attention, not in forked files."""
    for folder in (SRC / "models").iterdir():
        if folder.is_dir() and not folder.name.startswith("_"):
            modeling = sorted(p.name for p in folder.glob("*.py") if "model" in p.name and "config" not in p.name)
            assert len(modeling) <= 1, (folder.name, modeling)
    names = [p.name.lower() for p in SRC.rglob("*.py")]
    assert not [n for n in names if "fast" in n or "cached" in n]


@pytest.mark.slow
def test_compiled_forward_decodes_the_same_tokens_with_the_cache():
    """`torch.compile` traces the cached window pass (canvas indices, no host synchronisation) and gives the eager
    tokens."""
    model = _models()[0]
    prompt = torch.randint(0, 90, (1, 6), generator=torch.Generator().manual_seed(1))
    eager = _generate(model, prompt, None, cache_implementation="dual")
    model.forward = torch.compile(model.forward, dynamic=True)
    compiled = _generate(model, prompt, None, cache_implementation="dual")
    assert torch.equal(eager.sequences, compiled.sequences)
