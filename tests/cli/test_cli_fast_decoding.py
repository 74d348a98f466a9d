"""`hf-dlm generate --cache / --threshold / --factor`: the same tokens as the library call."""

import pytest
import torch

from hf_dlm import LLaDAModelLM
from hf_dlm._io import save_atomically
from hf_dlm.cli import main
from hf_dlm.evaluation.oracle import OracleLanguage
from tests.utils.models import tiny_llada_config


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    tokenizer = OracleLanguage(num_words=91).tokenizer()
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(vocab_size=len(tokenizer), embedding_size=len(tokenizer),
                                           mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
                                           eos_token_id=tokenizer.eos_token_id,
                                           bos_token_id=tokenizer.bos_token_id)).eval()
    model.generation_config.cache_implementation = "prefix"  # a saved cache that `--cache none` overrides
    folder = tmp_path_factory.mktemp("cli") / "llada"
    save_atomically(folder, model, tokenizer)
    return folder, model


@pytest.mark.parametrize("flags, kwargs", [
    (["--cache", "dual", "--factor", "1.0"], dict(cache_implementation="dual", factor=1.0)),
    (["--cache", "none", "--threshold", "0.2"], dict(cache_implementation=None, threshold=0.2)),
    ([], dict(cache_implementation="prefix")),
])
def test_generate_with_cache_and_parallel_rules_matches_the_library(saved, capsys, flags, kwargs):
    folder, model = saved
    assert main(["generate", str(folder), "--prompt-ids", "3,4,5", "--max-new-tokens", "8", "--steps", "8",
                 "--block-length", "4", *flags]) == 0
    printed = capsys.readouterr().out.strip()
    expected = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=8, steps=8, block_length=4,
                              generator=torch.Generator().manual_seed(0), **kwargs)
    tokenizer = OracleLanguage(num_words=91).tokenizer()
    assert printed == tokenizer.decode(expected[0, 3:], skip_special_tokens=True).strip()


def test_bad_cache_settings_are_one_line_errors(saved, capsys):
    folder, _ = saved
    assert main(["generate", str(folder), "--prompt-ids", "3", "--max-new-tokens", "4", "--steps", "4",
                 "--threshold", "0.5", "--factor", "1.0"]) == 2
    assert "factor" in capsys.readouterr().err


def test_compile_flag_runs_the_passes_through_the_compiled_call(saved, capsys, monkeypatch):
    """`--compile` asks for transformers' compiled call (replaced here by the eager call, to keep the test fast):
    every pass goes through it and the tokens are the library's."""
    folder, model = saved
    calls = []

    def get_compiled_call(self, config):
        calls.append(config)
        return self.__call__

    monkeypatch.setattr(LLaDAModelLM, "get_compiled_call", get_compiled_call)
    assert main(["generate", str(folder), "--prompt-ids", "3,4,5", "--max-new-tokens", "8", "--steps", "8",
                 "--block-length", "4", "--cache", "dual", "--compile"]) == 0
    assert len(calls) == 1 and calls[0].backend == "inductor"
    expected = model.generate(torch.tensor([[3, 4, 5]]), max_new_tokens=8, steps=8, block_length=4,
                              cache_implementation="dual", generator=torch.Generator().manual_seed(0))
    tokenizer = OracleLanguage(num_words=91).tokenizer()
    assert capsys.readouterr().out.strip() == tokenizer.decode(expected[0, 3:], skip_special_tokens=True).strip()
