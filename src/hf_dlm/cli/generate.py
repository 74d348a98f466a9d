"""``hf-dlm generate``: text from a diffusion LM, Di[M]O generator, Quant-dLLM checkpoint or Logit-FM model."""

from __future__ import annotations

import argparse

import torch

from ._parsing import SAVED, add_verb

EXAMPLES = """examples:
  hf-dlm generate outputs/demo --prompt "the cat" --max-new-tokens 32 --steps 16
  hf-dlm generate my-org/tiny-llada --prompt "a" --prompt "the" --block-length 8 --temperature 1.0 --seed 0
  hf-dlm generate outputs/dimo-student --prompt "the"             # one step: the saved generation config
  hf-dlm generate outputs/logit-fm --scheme hybrid --num-steps 64   # Logit-FM sampler settings
  hf-dlm generate outputs/no-tokenizer --prompt-ids 5,6,7           # token ids when there is no tokenizer"""


def add_parser(commands) -> None:
    parser = add_verb(commands, "generate", help="generate text with a saved model (folder or hub id)",
                                 description="Generate text with an hf-dlm text model; settings not given come from "
                                 "the model's saved generation config.\n\n" + EXAMPLES)
    parser.add_argument("model", help=SAVED)
    parser.add_argument("--prompt", action="append", default=None, help="a prompt (repeat for a batch)")
    parser.add_argument("--prompt-ids", default=None, help="a prompt as comma-separated token ids")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="denoiser calls (masked diffusion)")
    parser.add_argument("--block-length", type=int, default=None, help="semi-autoregressive block length")
    parser.add_argument("--temperature", type=float, default=None, help="> 0 samples; 0 is greedy")
    parser.add_argument("--remasking", default=None, help="low_confidence | random | … (masked diffusion)")
    parser.add_argument("--scheme", default=None, help="ode | semi_randomized | randomized | hybrid (Logit-FM)")
    parser.add_argument("--num-steps", type=int, default=None, help="function evaluations (Logit-FM)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def _generation_kwargs(args: argparse.Namespace, model) -> dict:
    kwargs = {"show_progress": True}
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.temperature is not None:
        if args.temperature < 0:
            raise ValueError(f"`--temperature` must be >= 0, got {args.temperature}.")
        kwargs.update(temperature=args.temperature, do_sample=args.temperature > 0)
    is_logit_fm = model.config.model_type == "logit_fm"
    text_only = {"steps": args.steps, "block_length": args.block_length, "remasking": args.remasking}
    flow_only = {"scheme": args.scheme, "num_steps": args.num_steps}
    wrong = [k for k, v in (text_only if is_logit_fm else flow_only).items() if v is not None]
    if wrong:
        raise ValueError(f"{['--' + w.replace('_', '-') for w in wrong]} do not apply to a "
                         f"{model.config.model_type} model.")
    kwargs.update({k: v for k, v in (flow_only if is_logit_fm else text_only).items() if v is not None})
    return kwargs


def run(args: argparse.Namespace) -> int:
    from ._loading import load_text_model

    if args.prompt and args.prompt_ids:
        raise ValueError("give `--prompt` or `--prompt-ids`, not both.")
    model, tokenizer = load_text_model(args.model)
    kwargs = _generation_kwargs(args, model)
    attention_mask = None
    if args.prompt_ids is not None:
        try:
            input_ids = torch.tensor([[int(i) for i in args.prompt_ids.split(",")]])
        except ValueError:
            raise ValueError(f"`--prompt-ids` must be comma-separated integers, got {args.prompt_ids!r}.") from None
    elif args.prompt:
        if tokenizer is None:
            raise ValueError(f"`--prompt` needs a tokenizer and {args.model!r} has none; pass `--prompt-ids`.")
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
