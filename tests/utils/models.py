"""Tiny models for tests: LLaDA / Dream configs (64 wide, 2 layers), a Quant-dLLM-quantized LLaDA, a LLaDA saved with
the oracle language's tokenizer, and a forward-call counter."""

import torch

from hf_dlm import DreamConfig, LLaDAConfig, LLaDAModelLM


def tiny_llada_config(**overrides) -> LLaDAConfig:
    kwargs = dict(vocab_size=96, embedding_size=100, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2,
                  mlp_hidden_size=96, max_sequence_length=64, rope_theta=10000.0, mask_token_id=95,
                  pad_token_id=94, eos_token_id=93, bos_token_id=92)
    kwargs.update(overrides)
    return LLaDAConfig(**kwargs)


def tiny_dream_config(**overrides) -> DreamConfig:
    kwargs = dict(vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, rope_theta=10000.0, mask_token_id=95,
                  pad_token_id=94, eos_token_id=93, bos_token_id=92)
    kwargs.update(overrides)
    return DreamConfig(**kwargs)


# Quant-dLLM settings small enough for a 64-wide, 2-block LLaDA in a test
TINY_QUANT = {"block_size": 16, "abmp_fraction": 0.25, "num_calibration_sequences": 8, "calibration_seq_len": 24,
              "mcs_timesteps": 2, "rsr_iterations": 3, "calibration_batch_size": 4}


def tiny_quantized_llada() -> LLaDAModelLM:
    """A tiny LLaDA quantized with Quant-dLLM on random calibration ids (seeded: the same weights every call)."""
    from hf_dlm import QuantDLLMConfig, QuantDLLMQuantizer

    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config()).eval()
    QuantDLLMQuantizer(QuantDLLMConfig(**TINY_QUANT)).quantize_model(
        model, calibration_data=torch.randint(0, 90, (8, 24), generator=torch.Generator().manual_seed(0)),
        show_progress=False)
    return model


def generate_padded_pair(model, **kwargs):
    """``model.generate`` on two 6-token prompts, the second left-padded by 2: 16 new tokens in blocks of 8, 8 steps,
    no EOS stop, generator seed 3; ``kwargs`` override."""
    prompt = torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    mask[1, :2] = 0
    kwargs = {"max_new_tokens": 16, "steps": 8, "block_length": 8, "stop_at_eos": False, **kwargs}
    return model.generate(prompt, attention_mask=mask, generator=torch.Generator().manual_seed(3), **kwargs)


def head_rows(model) -> list[int]:
    """A list that records, per call of the output layer, how many positions it projects."""
    rows: list[int] = []
    model.get_output_embeddings().register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[1]))
    return rows


class CallCounter:
    """Counts the forward calls of a model (its denoiser passes)."""

    def __init__(self, model):
        self.calls = 0
        model.register_forward_pre_hook(self._hook)

    def _hook(self, *args):
        self.calls += 1


def save_oracle_llada(path):
    """A tiny LLaDA with the oracle language's tokenizer and saved sampler settings (6 tokens, blocks of 3), saved
    with the tokenizer to ``path``; returns the tokenizer."""
    from hf_dlm import MaskedDiffusionGenerationConfig
    from hf_dlm.evaluation.oracle import OracleLanguage

    tok = OracleLanguage().tokenizer()
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(vocab_size=len(tok), embedding_size=len(tok), n_kv_heads=4,
                                           mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id,
                                           eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id))
    model.generation_config = MaskedDiffusionGenerationConfig(max_new_tokens=6, steps=6, block_length=3,
                                                              suppress_tokens=tok.all_special_ids)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return tok
