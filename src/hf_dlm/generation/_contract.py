"""transformers' ``generate()`` contract for our samplers: every ``GenerationConfig`` field and ``generate()``
argument a user can pass is either honoured or refused with a ``ValueError`` naming it — never accepted and ignored.
"""

from __future__ import annotations

from typing import Any

# `generate()` arguments that are not settings: accepted when they ask for nothing (None, False, an empty list),
# refused by name otherwise.
_GENERATE_ARGUMENTS = {
    "logits_processor": "logits processors act on next-token scores of an autoregressive loop; masked diffusion "
                        "scores every masked position at once (use `suppress_tokens`, `top_k`, `top_p`)",
    "stopping_criteria": "masked diffusion decodes a fixed canvas; it stops at EOS with `stop_at_eos`",
    "prefix_allowed_tokens_fn": "constrained prefixes need autoregressive decoding",
    "assistant_model": "assisted (speculative) decoding needs autoregressive decoding",
    "negative_prompt_ids": "masked diffusion guides with the masked prompt (`cfg_scale`), not a negative prompt",
    "negative_prompt_attention_mask": "masked diffusion guides with the masked prompt (`cfg_scale`)",
    "custom_generate": "this model's generate() is its own sampler already; call the sampler function directly "
                       "(e.g. `hf_dlm.logit_fm_generate(model, ...)`) or pass `custom_generate` to a model without one",
    "synced_gpus": "every rank runs the same number of denoising passes without synchronisation",
    "assistant_tokenizer": "assisted (speculative) decoding needs autoregressive decoding",
}
# accepted and harmless (the tokenizer only serves `stop_strings`, read by the sampler that honours them)
_HARMLESS_ARGUMENTS = ("tokenizer", "use_model_defaults")


def pop_generate_arguments(kwargs: dict[str, Any], method: str) -> None:
    """Remove from ``kwargs`` the non-setting ``generate()`` arguments; raise ``ValueError`` for one that asks for
    something ``method`` cannot do."""
    for name in _HARMLESS_ARGUMENTS:
        kwargs.pop(name, None)
    for name, reason in _GENERATE_ARGUMENTS.items():
        if name not in kwargs:
            continue
        value = kwargs.pop(name)
        if value is None or value is False or (hasattr(value, "__len__") and len(value) == 0):
            continue
        raise ValueError(f"generate() got `{name}`, which {method} cannot honour: {reason}.")


# GenerationConfig fields our masked-diffusion sampler honours (the rest of its settings are its own fields).
HONOURED_FIELDS = frozenset({
    "max_new_tokens", "max_length", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p",
    "num_return_sequences", "return_dict_in_generate", "suppress_tokens", "bad_words_ids", "use_cache",
    "bos_token_id", "eos_token_id", "pad_token_id", "stop_strings",
})
# fields that describe the file or only matter with an assistant model / compilation (refused on their own)
INERT_FIELDS = frozenset({
    "_from_model_config", "transformers_version", "_commit_hash", "is_assistant", "assistant_confidence_threshold",
    "assistant_lookbehind", "target_lookbehind", "num_assistant_tokens", "num_assistant_tokens_schedule",
    "max_matching_ngram_size", "assistant_early_exit", "assistant_ensemble_weight", "disable_compile",
    "decoder_start_token_id",
})
# values of the remaining fields that ask for nothing
_NEUTRAL = {
    "num_beams": (1,), "num_beam_groups": (1,), "diversity_penalty": (0.0,), "length_penalty": (1.0,),
    "early_stopping": (False,), "repetition_penalty": (1.0,), "encoder_repetition_penalty": (1.0,),
    "no_repeat_ngram_size": (0,), "encoder_no_repeat_ngram_size": (0,), "typical_p": (1.0,), "min_p": (0.0,),
    "epsilon_cutoff": (0.0,), "eta_cutoff": (0.0,), "guidance_scale": (1.0,), "min_length": (0,),
    "output_attentions": (False,), "output_hidden_states": (False,), "output_scores": (False,),
    "output_logits": (False,), "remove_invalid_values": (False,), "renormalize_logits": (False,),
    "low_memory": (False,), "token_healing": (False,), "use_mtp": (False,), "prompt_lookup_num_tokens": (),
}
_REASONS = {
    "num_beams": "beam search has no masked-diffusion counterpart",
    "repetition_penalty": "a repetition penalty is defined on an autoregressive prefix",
    "guidance_scale": "masked diffusion uses LLaDA's unsupervised guidance, `cfg_scale`",
    "output_scores": "per-step scores are not kept; `output_history=True` returns the canvas after every step",
    "output_logits": "per-step logits are not kept; `output_history=True` returns the canvas after every step",
    "min_length": "set `min_new_tokens` instead",
}


def refuse_unsupported_fields(config: Any, own_fields: frozenset[str]) -> None:
    """Raise ``ValueError`` naming every field of ``config`` that asks for something masked-diffusion decoding
    does not do (``num_beams=2``, ``repetition_penalty=1.3``, ``output_scores=True`` …)."""
    refused = []
    for name, value in config.to_dict().items():
        if name in HONOURED_FIELDS or name in INERT_FIELDS or name in own_fields or name.startswith("_"):
            continue
        if value is None or value in _NEUTRAL.get(name, ()) or value == {} or value == []:
            continue
        reason = _REASONS.get(name, "masked-diffusion decoding does not implement it")
        refused.append(f"`{name}={value!r}` ({reason})")
    if refused:
        raise ValueError("generate() cannot honour these generation settings: " + "; ".join(refused) + ".")


def stop_string_ids(stop_strings: list[str] | str, tokenizer: Any) -> list[int]:
    """The token id of each stop string: masked diffusion can stop at a string only when it is one token (an
    end-of-turn marker such as ``<|eot_id|>``); anything else raises ``ValueError`` naming ``stop_strings``."""
    strings = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings)
    if tokenizer is None:
        raise ValueError(f"`stop_strings={strings!r}` needs the `tokenizer` argument to find their token ids.")
    ids = []
    for text in strings:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ValueError(f"`stop_strings` entry {text!r} is {len(encoded)} tokens; masked diffusion does not "
                             "decode left to right, so it can only stop at single-token strings (end-of-turn ids).")
        ids.append(int(encoded[0]))
    return ids


def largest_divisor_at_most(n: int, bound: int) -> int:
    """The largest divisor of ``n`` that is ≤ ``bound`` (≥ 1)."""
    for d in range(min(n, max(bound, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


__all__ = ["HONOURED_FIELDS", "largest_divisor_at_most", "pop_generate_arguments", "refuse_unsupported_fields",
           "stop_string_ids"]
