"""``hf-dlm generate``: text from a diffusion LM, Di[M]O generator, Quant-dLLM checkpoint or Logit-FM model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._errors import CLIError
from ._parsing import SAVED, add_verb, non_empty, non_negative_float, positive_int, seed

EXAMPLES = """examples:
  hf-dlm generate outputs/demo --prompt "the cat" --max-new-tokens 32 --steps 16
  hf-dlm generate my-org/tiny-llada --prompt "a" --prompt "the" --block-length 8 --temperature 1.0 --seed 0
  hf-dlm generate outputs/dimo-student --prompt "the"             # one step: the saved generation config
  hf-dlm generate outputs/logit-fm --scheme hybrid --num-steps 64   # Logit-FM sampler settings
  hf-dlm generate outputs/no-tokenizer --prompt-ids 5,6,7           # token ids when there is no tokenizer"""

# hf_dlm.generation.REMASKING_STRATEGIES and hf_dlm.generation.logit_fm.configuration.SCHEMES, written out so that
# --help imports nothing (a test keeps them equal)
REMASKING = ("low_confidence", "random", "margin", "entropy", "origin")
SCHEMES = ("ode", "semi_randomized", "randomized", "hybrid")


def add_parser(commands: Any) -> None:
    parser = add_verb(commands, "generate", help="generate text with a saved model (folder or hub id)",
                      description="Generate text with an hf-dlm text model; settings not given come from the model's "
                      "saved generation config.\n\n" + EXAMPLES)
    parser.add_argument("model", help=SAVED)
    parser.add_argument("--prompt", action="append", default=None, type=non_empty,
                        help="a prompt (repeat for a batch)")
    parser.add_argument("--prompt-ids", default=None, help="a prompt as comma-separated token ids")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None)
    parser.add_argument("--steps", type=positive_int, default=None, help="denoiser calls (masked diffusion)")
    parser.add_argument("--block-length", type=positive_int, default=None, help="semi-autoregressive block length")
    parser.add_argument("--temperature", type=non_negative_float, default=None, help="> 0 samples; 0 is greedy")
    parser.add_argument("--remasking", default=None, choices=REMASKING, help="which masked positions to reveal "
                        "(masked diffusion; default: the model family's own)")
    parser.add_argument("--cache", default=None, choices=("none", "prefix", "dual"),
                        help="Fast-dLLM key/value cache (masked diffusion): none re-encodes the canvas every step; "
                             "prefix / dual reuse the keys and values left of / around the block (faster, approximate)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="confidence-threshold parallel decoding: commit every token scoring >= this")
    parser.add_argument("--factor", type=float, default=None,
                        help="Fast-dLLM's factor-based parallel decoding (low_confidence remasking)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="run the denoiser passes through torch.compile (masked diffusion; transformers' "
                             "CompileConfig): the first call compiles, so it pays off on long answers and batches")
    parser.add_argument("--scheme", default=None, choices=SCHEMES, help="Logit-FM sampling scheme")
    parser.add_argument("--num-steps", type=positive_int, default=None, help="function evaluations (Logit-FM)")
    parser.add_argument("--seed", type=seed, default=0)
    parser.set_defaults(run=run, check=check)


def parse_prompt_ids(text: str) -> list[int]:
    """``"5,6,7"`` → ``[5, 6, 7]``; refuses anything but non-negative integers (exit 2)."""
    parts = [part.strip() for part in text.split(",")]
    try:
        ids = [int(part) for part in parts]
    except ValueError:
        raise CLIError(f"`--prompt-ids` must be comma-separated integers, got {text!r}.") from None
    negative = [i for i in ids if i < 0]
    if negative:
        raise CLIError(f"`--prompt-ids` must be token ids >= 0, got {negative[0]}.")
    return ids


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before the model is loaded."""
    from ._loading import check_saved

    if args.prompt and args.prompt_ids is not None:
        raise CLIError("give `--prompt` or `--prompt-ids`, not both.")
    if args.prompt_ids is not None:
        args.prompt_id_list = parse_prompt_ids(args.prompt_ids)
    check_saved(args.model, "`model`")


def _generation_kwargs(args: argparse.Namespace, model: Any) -> dict:
    kwargs: dict[str, Any] = {"show_progress": sys.stderr.isatty()}
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.temperature is not None:
        kwargs.update(temperature=args.temperature, do_sample=args.temperature > 0)
    is_logit_fm = model.config.model_type == "logit_fm"
    text_only = {"steps": args.steps, "block_length": args.block_length, "remasking": args.remasking,
                 "cache": args.cache, "threshold": args.threshold, "factor": args.factor, "compile": args.compile}
    flow_only = {"scheme": args.scheme, "num_steps": args.num_steps}
    wrong = [k for k, v in (text_only if is_logit_fm else flow_only).items() if v is not None]
    if wrong:
        raise CLIError(f"{', '.join('--' + w.replace('_', '-') for w in wrong)} do not apply to a "
                       f"{model.config.model_type} model.")
    kwargs.update({k: v for k, v in (flow_only if is_logit_fm else text_only).items() if v is not None})
    if "cache" in kwargs:  # `none` overrides a cache saved in the generation config
        cache = kwargs.pop("cache")
        kwargs["cache_implementation"] = None if cache == "none" else cache
    if kwargs.pop("compile", None):
        from transformers.generation.configuration_utils import CompileConfig

        kwargs["compile_config"] = CompileConfig(mode="default")  # no CUDA graphs: the cache outlives a pass
    return kwargs


def _check_vocabulary(ids: list[int], model: Any) -> None:
    vocab_size = model.config.vocab_size
    outside = [i for i in ids if i >= vocab_size]
    if outside:
        raise CLIError(f"`--prompt-ids`: token id {outside[0]} is outside the model's vocabulary (ids 0 to "
                       f"{vocab_size - 1}).")


def run(args: argparse.Namespace) -> int:
    import torch

    from ._loading import load_text_model

    model, tokenizer = load_text_model(args.model)
    kwargs = _generation_kwargs(args, model)
    attention_mask = None
    if args.prompt_ids is not None:
        _check_vocabulary(args.prompt_id_list, model)
        input_ids = torch.tensor([args.prompt_id_list])
    elif args.prompt:
        if tokenizer is None:
            raise CLIError(f"`--prompt` needs a tokenizer and {args.model!r} has none; pass `--prompt-ids`.")
        tokenizer.padding_side = "left"
        encoded = tokenizer(args.prompt, return_tensors="pt", padding=True)
        input_ids, attention_mask = encoded.input_ids, encoded.attention_mask
    else:
        input_ids = None  # the model starts from its BOS token
    generator = torch.Generator().manual_seed(args.seed)
    output = model.generate(input_ids, attention_mask=attention_mask, generator=generator, **kwargs)
    prompt_length = 0 if input_ids is None else input_ids.shape[1]
    for row in output:
        new = row[prompt_length:]
        print(tokenizer.decode(new, skip_special_tokens=True).strip() if tokenizer is not None
              else ",".join(str(int(i)) for i in new))
    return 0
