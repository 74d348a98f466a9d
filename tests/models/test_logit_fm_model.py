"""LogitFMModel: Auto classes, save/load, generate(), pipeline("text-generation"), custom_generate, bad input."""

import pytest
import torch
from transformers import (AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel, pipeline)
from transformers.modeling_outputs import CausalLMOutput

from hf_dlm import LogitFMConfig, LogitFMGenerationConfig, LogitFMModel, logit_fm_generate
from hf_dlm.evaluation.oracle import OracleLanguage


def tiny_config(**overrides) -> LogitFMConfig:
    kwargs = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  max_position_embeddings=48, time_embedding_dim=16, pad_token_id=39)
    kwargs.update(overrides)
    return LogitFMConfig(**kwargs)


def perturbed(model: LogitFMModel) -> LogitFMModel:
    """Random weights everywhere (adaLN-Zero layers start at zero, which would hide time-conditioning bugs)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("mode", ["adaln", "adaln_single", "time_token"])
def test_save_load_identical_logits_and_generation_settings(tmp_path, mode):
    model = perturbed(LogitFMModel(tiny_config(time_conditioning=mode)))
    model.generation_config = LogitFMGenerationConfig(scheme="hybrid", num_steps=6, hybrid_switch_time=0.4,
                                                      max_new_tokens=5, top_k=2, time_grid="log", t_end=0.98)
    model.save_pretrained(tmp_path)
    for loader in (LogitFMModel, AutoModel, AutoModelForCausalLM):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is LogitFMModel
        simplex = torch.softmax(torch.randn(2, 7, 40, generator=torch.Generator().manual_seed(1)), -1)
        t = torch.tensor([0.1, 0.7])
        torch.testing.assert_close(loaded(simplex=simplex, timesteps=t).logits,
                                   model(simplex=simplex, timesteps=t).logits, rtol=0, atol=0)
        config = loaded.generation_config
        assert isinstance(config, LogitFMGenerationConfig)
        assert (config.scheme, config.num_steps, config.hybrid_switch_time, config.top_k, config.time_grid,
                config.t_end) == ("hybrid", 6, 0.4, 2, "log", 0.98)
        prompt = torch.tensor([[1, 2, 3]])
        assert torch.equal(loaded.generate(prompt, generator=torch.Generator().manual_seed(2)),
                           model.generate(prompt, generator=torch.Generator().manual_seed(2)))


def test_time_changes_the_output_and_one_hot_points_equal_token_ids():
    model = perturbed(LogitFMModel(tiny_config()))
    ids = torch.tensor([[1, 5, 7, 2]])
    one_hot = torch.nn.functional.one_hot(ids, 40).float()
    torch.testing.assert_close(model(simplex=one_hot, timesteps=0.3).logits, model(input_ids=ids, timesteps=0.3).logits)
    assert not torch.allclose(model(input_ids=ids, timesteps=0.1).logits, model(input_ids=ids, timesteps=0.9).logits)


def test_left_padding_does_not_change_generation():
    model = perturbed(LogitFMModel(tiny_config()))
    alone = model.generate(torch.tensor([[4, 9]]), max_new_tokens=5, num_steps=4,
                           generator=torch.Generator().manual_seed(3))
    padded = model.generate(torch.tensor([[39, 4, 9]]), attention_mask=torch.tensor([[0, 1, 1]]), max_new_tokens=5,
                            num_steps=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(padded[:, 1:], alone)


def test_generate_output_and_nfe():
    model = perturbed(LogitFMModel(tiny_config()))
    for scheme in ("ode", "semi_randomized", "randomized", "hybrid"):
        out = model.generate(torch.empty(3, 0, dtype=torch.long), max_new_tokens=6, num_steps=5, scheme=scheme,
                             return_dict_in_generate=True, output_history=True, suppress_tokens=[39])
        assert out.sequences.shape == (3, 6) and out.nfe == 5 and len(out.history) == 5
        assert not bool((out.sequences == 39).any())
    early = model.generate(torch.empty(64, 0, dtype=torch.long), max_new_tokens=6, num_steps=3, t_end=0.05,
                           suppress_tokens=[39, 38, 37])
    assert not bool((early >= 37).any())  # t_end < 1: x_t is mostly noise, yet suppressed ids never come out


class OtherDenoiser(PreTrainedModel, GenerationMixin):
    """Another architecture that returns p(x_1 | x_t, t) through the ``inputs_embeds`` contract."""

    config_class = LogitFMConfig

    def __init__(self, config: LogitFMConfig) -> None:
        super().__init__(config)
        self.inner = LogitFMModel(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.inner.embed_tokens

    def forward(self, input_ids=None, inputs_embeds=None, timesteps=None, attention_mask=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.inner.embed_tokens(input_ids)
        return CausalLMOutput(logits=self.inner(inputs_embeds=inputs_embeds, timesteps=timesteps,
                                                attention_mask=attention_mask).logits)


def test_custom_generate_callable_runs_the_same_sampler_on_another_model():
    config = tiny_config()
    other = OtherDenoiser(config)
    other.inner = perturbed(LogitFMModel(config))
    other.eval()
    settings = LogitFMGenerationConfig(scheme="randomized", num_steps=4, max_new_tokens=5)
    prompt = torch.tensor([[1, 2, 3]])
    got = other.generate(prompt, custom_generate=logit_fm_generate, max_new_tokens=5, logit_fm_config=settings,
                         generator=torch.Generator().manual_seed(4))
    expected = other.inner.generate(prompt, generation_config=settings, generator=torch.Generator().manual_seed(4))
    assert torch.equal(got, expected)
    out = other.generate(prompt, custom_generate=logit_fm_generate, max_new_tokens=3, return_dict_in_generate=True,
                         logit_fm_config=settings)
    assert out.sequences.shape == (1, 6) and out.nfe == 4


def test_text_generation_pipeline(tmp_path):
    tok = OracleLanguage().tokenizer()
    model = perturbed(LogitFMModel(tiny_config(vocab_size=len(tok), pad_token_id=tok.pad_token_id)))
    model.generation_config = LogitFMGenerationConfig(max_new_tokens=6, num_steps=4,
                                                      suppress_tokens=tok.all_special_ids)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    generator = pipeline("text-generation", model=str(tmp_path))
    text = generator("the a of", return_full_text=False)[0]["generated_text"]
    assert len(text.split()) == 6  # the saved max_new_tokens, not the pipeline's 256
    more = generator("the a of", max_new_tokens=3, num_steps=2, return_full_text=False)[0]["generated_text"]
    assert len(more.split()) == 3


def test_bad_input_raises_clear_errors():
    model = LogitFMModel(tiny_config())
    with pytest.raises(ValueError, match="scheme"):
        model.generate(max_new_tokens=3, scheme="euler")
    with pytest.raises(ValueError, match="num_steps"):
        model.generate(max_new_tokens=3, num_steps=0)
    with pytest.raises(ValueError, match="top_k"):
        model.generate(max_new_tokens=3, top_k=0)
    with pytest.raises(ValueError, match="hybrid_switch_time"):
        model.generate(max_new_tokens=3, scheme="hybrid", hybrid_switch_time=2.0)
    with pytest.raises(ValueError, match="smoothing_beta"):
        model.generate(max_new_tokens=3, smoothing_beta=0.0)
    with pytest.raises(ValueError, match="neither generation settings.*remasking"):
        model.generate(max_new_tokens=3, remasking="random")  # a masked-diffusion setting, not a Logit-FM one
    with pytest.raises(ValueError, match="positions"):
        model.generate(torch.zeros(1, 40, dtype=torch.long), max_new_tokens=10)
    with pytest.raises(ValueError, match="timesteps"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=torch.zeros(1, 3, dtype=torch.long), simplex=torch.ones(1, 3, 40) / 40, timesteps=0.5)
    with pytest.raises(ValueError, match="categories"):
        model(simplex=torch.ones(1, 3, 30) / 30, timesteps=0.5)
    with pytest.raises(ValueError, match="smoothing_beta"):
        tiny_config(smoothing_beta=1.0)
    with pytest.raises(ValueError, match="time_conditioning"):
        tiny_config(time_conditioning="concat")


def test_fresh_model_generation_config_takes_only_token_ids_from_the_model_config():
    from tests.utils.models import tiny_llada_config

    from hf_dlm import LLaDAModelLM, MaskedDiffusionGenerationConfig

    config = LogitFMModel(tiny_config(bos_token_id=1, eos_token_id=2)).generation_config
    assert isinstance(config, LogitFMGenerationConfig)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 39)
    assert not hasattr(config, "vocab_size") and config.scheme == "randomized"
    masked = LLaDAModelLM(tiny_llada_config()).generation_config
    assert isinstance(masked, MaskedDiffusionGenerationConfig)
    assert (masked.mask_token_id, masked.pad_token_id, masked.eos_token_id, masked.bos_token_id) == (95, 94, 93, 92)
    assert not hasattr(masked, "d_model")
