"""Train the reference masked-diffusion teacher (LLaDA architecture) on the oracle language — the model the
Di[M]O, Quant-dLLM and Logit-FM work starts from — and report its quality and diversity exactly.

    .venv/bin/python examples/train_oracle_teacher.py --size bench --output-dir outputs/teacher-bench
    .venv/bin/python examples/train_oracle_teacher.py --size tiny                  # seconds

The settings live in `hf_dlm.recipes.reference.REFERENCE_SETTINGS`; `load_reference("teacher", size)` returns the
same model from the cache ($HF_DLM_CACHE, default ~/.cache/hf_dlm) after the first build.
"""

import argparse
import logging

import torch

import hf_dlm  # noqa: F401
from hf_dlm._io import save_atomically
from hf_dlm.evaluation import heldout_nll, text_metrics
from hf_dlm.recipes.reference import get_settings, load_reference, oracle_and_tokenizer
from hf_dlm.evaluation.text_metrics import data_reference


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="bench")
    parser.add_argument("--output-dir", default=None, help="also save the teacher here")
    parser.add_argument("--num-samples", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    settings = get_settings(args.size)
    teacher, tokenizer, info = load_reference("teacher", args.size)
    oracle, _ = oracle_and_tokenizer(settings)
    print(f"teacher: {info['parameters'] / 1e6:.2f} M parameters, {info['token_budget'] / 1e6:.1f} M training tokens, "
          f"trained in {info['train_seconds']:.0f} s")
    held_out = oracle.sample(64, settings.seq_len, seed=4242)
    elbo = heldout_nll(teacher, held_out, mc_samples=32, batch_size=32, generator=torch.Generator().manual_seed(0))
    data = data_reference(oracle, args.num_samples, settings.seq_len)
    samples = teacher.generate(torch.empty(args.num_samples, 0, dtype=torch.long),
                               generator=torch.Generator().manual_seed(0))
    model = text_metrics(oracle, samples)
    print(f"held-out NLL (ELBO bound) {elbo.nll:.3f} ± {elbo.stderr:.3f} nats/word")
    print(f"data:    gen-PPL {data.gen_ppl:6.2f}  entropy {data.entropy:.3f}")
    print(f"teacher: gen-PPL {model.gen_ppl:6.2f}  entropy {model.entropy:.3f}  "
          f"({settings.seq_len} steps, {teacher.generation_config.remasking} order, top-p "
          f"{teacher.generation_config.top_p})")
    print("sample:", oracle.decode(samples[:1])[0])
    if args.output_dir:
        save_atomically(args.output_dir, teacher, tokenizer)
        print(f"saved to {args.output_dir}")


if __name__ == "__main__":
    main()
