"""Supervised fine-tuning of a masked diffusion LM with LoRA, then batched generation and exact scoring.

Run after `make demo` (it fine-tunes the model the demo saved in outputs/demo):
    .venv/bin/python examples/sft_lora_oracle.py --base outputs/demo --steps 100
The "prompt" is the first 8 words of an oracle sentence, the "answer" the next 16; the SFT loss never masks
the prompt. Prints the exact oracle NLL per answer word before and after fine-tuning.
"""

import argparse
import tempfile

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

import hf_dlm  # noqa: F401
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.training import MaskedDiffusionSFTCollator, MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments

PROMPT, ANSWER = 8, 16


def answer_nll(model, oracle, prompts):
    out = model.generate(prompts, max_new_tokens=ANSWER, steps=ANSWER, block_length=8, stop_at_eos=False,
                         generator=torch.Generator().manual_seed(0))
    return float(-oracle.conditional_log_prob(out[:, :PROMPT + ANSWER])[:, PROMPT:].mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="outputs/demo")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    oracle = OracleLanguage()
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base)
    data = oracle.sample(4000, PROMPT + ANSWER, seed=7)
    train = [{"prompt_ids": row[:PROMPT].tolist(), "answer_ids": row[PROMPT:].tolist()} for row in data]
    prompts = oracle.sample(128, PROMPT, seed=8)
    print(f"answer NLL before: {answer_nll(model.eval(), oracle, prompts):.3f}")

    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj"]))
    model.print_trainable_parameters()
    with tempfile.TemporaryDirectory() as out:
        training_args = MaskedDiffusionTrainingArguments(
            output_dir=out, per_device_train_batch_size=64, max_steps=args.steps, learning_rate=1e-3,
            logging_steps=25, save_strategy="no", report_to=[], use_cpu=True)
        MaskedDiffusionTrainer(model=model, args=training_args, train_dataset=train,
                               data_collator=MaskedDiffusionSFTCollator(tokenizer)).train()
    print(f"answer NLL after:  {answer_nll(model.eval(), oracle, prompts):.3f}")


if __name__ == "__main__":
    main()
