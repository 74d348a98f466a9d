"""Compiled denoising passes: ``generate(compile_config=CompileConfig(...))`` runs every pass through
``PreTrainedModel.get_compiled_call`` (transformers' own compiled call) and gives the eager tokens; ``disable_compile``
wins; the setting is validated and, as in transformers, not saved."""

import json

import pytest
import torch
from transformers.generation.configuration_utils import CompileConfig

from hf_dlm import DreamModel, LLaDAModelLM
from tests.utils.models import generate_padded_pair, head_rows, tiny_dream_config, tiny_llada_config


def _model(index):
    torch.manual_seed(0)
    return (LLaDAModelLM(tiny_llada_config()) if index == 0 else DreamModel(tiny_dream_config())).eval()


class _Spy:
    """Wraps ``model.get_compiled_call`` and counts the passes that go through the compiled call."""

    def __init__(self, model):
        self.requested, self.passes = 0, 0
        original = model.get_compiled_call

        def get_compiled_call(config):
            self.requested += 1
            compiled = original(config)

            def call(*args, **kwargs):
                self.passes += 1
                return compiled(*args, **kwargs)
            return call
        model.get_compiled_call = get_compiled_call


@pytest.mark.parametrize("cache", [None, "dual", "prefix"])
@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
def test_every_pass_goes_through_the_compiled_call_with_the_eager_tokens(index, cache):
    model = _model(index)
    eager = generate_padded_pair(model, cache_implementation=cache)
    spy = _Spy(model)
    compiled = generate_padded_pair(model, cache_implementation=cache, compile_config=CompileConfig(backend="eager"))
    assert spy.requested == 1 and spy.passes == 8
    assert torch.equal(eager, compiled)


def test_disable_compile_wins_and_the_default_is_eager():
    model = _model(0)
    spy = _Spy(model)
    generate_padded_pair(model)
    generate_padded_pair(model, compile_config=CompileConfig(backend="eager"), disable_compile=True)
    assert spy.requested == 0


def test_a_compile_config_of_another_type_is_refused():
    with pytest.raises(ValueError, match="compile_config"):
        generate_padded_pair(_model(0), compile_config={"backend": "eager"})


def test_the_compile_config_is_not_saved(tmp_path):
    model = _model(0)
    model.generation_config.compile_config = CompileConfig(backend="eager")
    model.save_pretrained(tmp_path)
    assert "compile_config" not in json.loads((tmp_path / "generation_config.json").read_text())
    assert LLaDAModelLM.from_pretrained(tmp_path).generation_config.compile_config is None


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
def test_inductor_compiled_passes_decode_the_eager_tokens(index):
    """Inductor-compiled passes (the refresh and the block window of the dual cache) give the eager tokens."""
    model = _model(index)
    eager = generate_padded_pair(model, cache_implementation="dual")
    compiled = generate_padded_pair(model, cache_implementation="dual", compile_config=CompileConfig(dynamic=False))
    assert torch.equal(eager, compiled)


@pytest.mark.parametrize("index", [0, 1], ids=["llada", "dream"])
def test_a_one_step_generator_honours_compile_config_and_keeps_only_the_answer_logits(index):
    """Di[M]O's one-step path: its single pass goes through the compiled call, with the head on the answer only
    (Dream: one position earlier), and the tokens are those of the whole canvas's logits."""
    from hf_dlm.generation.initial_state import DiMOInitialState

    model = _model(index)
    DiMOInitialState(r_init=0.6, vocab_size=90, embedding_noise_std=0.1).attach_to(model, max_new_tokens=16)
    rows = head_rows(model)
    eager = generate_padded_pair(model, steps=1, block_length=16)
    assert rows == [16 + index]
    spy = _Spy(model)
    compiled = generate_padded_pair(model, steps=1, block_length=16, compile_config=CompileConfig(backend="eager"))
    assert spy.requested == 1 and spy.passes == 1
    assert torch.equal(eager, compiled)
    original = model.forward

    def forward_without_selection(*args, **kwargs):  # no `logits_to_keep`: the whole canvas's logits
        return original(*args, **kwargs)

    model.forward = forward_without_selection
    rows.clear()
    assert torch.equal(eager, generate_padded_pair(model, steps=1, block_length=16))
    assert rows == [22]


def test_cuda_graphs_with_a_cache_are_refused_by_name():
    """mode='reduce-overhead' (CUDA graphs, the CompileConfig default) would let a graph replay reuse the memory of
    the keys and values the cache keeps between passes: refused on CUDA with a cache; fine without one or on CPU."""
    from hf_dlm import MaskedDiffusionGenerationConfig

    model = _model(0)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    cached = MaskedDiffusionGenerationConfig(compile_config=CompileConfig(), cache_implementation="dual")
    with pytest.raises(ValueError, match="reduce-overhead.*cache_implementation='dual'"):
        model._decoding_forward(cached, cuda)
    assert model._decoding_forward(cached, cpu) is not None
    uncached = MaskedDiffusionGenerationConfig(compile_config=CompileConfig())
    assert model._decoding_forward(uncached, cuda) is not None
    plain = MaskedDiffusionGenerationConfig(compile_config=CompileConfig(mode="default"), cache_implementation="dual")
    assert model._decoding_forward(plain, cuda) is not None
