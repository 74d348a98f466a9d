"""Helpers for the tests of the Gradio Space app (integrations/space/app.py): its module, tiny models built
in-process, a free port on 127.0.0.1."""

from __future__ import annotations

import socket
from pathlib import Path

import torch

SPACE = Path(__file__).resolve().parents[2] / "integrations" / "space"
GENERATION = dict(max_new_tokens=24, steps=24, block_length=8, stop_at_eos=False, do_sample=True, temperature=1.0)


def space_module():
    """integrations/space/app.py, imported as ``hf_dlm_space_app`` the way ``hf-dlm app`` imports it."""
    from hf_dlm.cli.app import load_space_module

    return load_space_module(SPACE)


def tiny_oracle_llada(seed: int = 0):
    """(model, tokenizer): an untrained LLaDA (d 32, 2 layers) with the oracle language's tokenizer and the demo's
    sampler settings, so the app's exact oracle score applies to it."""
    from hf_dlm import LLaDAConfig, LLaDAModelLM, MaskedDiffusionGenerationConfig
    from hf_dlm.evaluation import OracleLanguage

    tok = OracleLanguage().tokenizer()
    config = LLaDAConfig(vocab_size=len(tok), embedding_size=len(tok), d_model=32, n_layers=2, n_heads=4,
                         mlp_hidden_size=64, max_sequence_length=64, rope_theta=10000.0,
                         mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(seed)
    model = LLaDAModelLM(config).eval()
    model.generation_config = MaskedDiffusionGenerationConfig(suppress_tokens=list(tok.all_special_ids),
                                                              **GENERATION)
    return model, tok


def tiny_digits_pipeline():
    """The digits text-to-image pipeline at test size (untrained; the digits VQ decoder, so images are ink maps)."""
    from hf_dlm.recipes.digits import build_digits_pipeline

    pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
