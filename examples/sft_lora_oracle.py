"""Supervised fine-tuning of a masked diffusion LM with LoRA on a new domain, then generation and exact scoring.

Run after `make demo` (it adapts the model the demo saved in outputs/demo, trained on the seed-0 oracle language,
to the seed-1 oracle language — different grammar over the same token ids):
    .venv/bin/python examples/sft_lora_oracle.py --base outputs/demo --steps 200
The "prompt" is the first 8 words of a sentence, the "answer" the next 16; the SFT loss never masks the prompt.
Prints the exact NLL per answer word under the new language before and after fine-tuning.
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
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    oracle = OracleLanguage(seed=1)
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    model = AutoModelForCausalLM.from_pretrained(args.base)
    data = oracle.sample(4000, PROMPT + ANSWER, seed=7)
    train = [{"input_ids": row.tolist(), "prompt_length": PROMPT} for row in data]  # fixed length: no EOS needed
    prompts = oracle.sample(128, PROMPT, seed=8)
    print(f"answer NLL before: {answer_nll(model.eval(), oracle, prompts):.3f}")

    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"]))
    model.print_trainable_parameters()
    with tempfile.TemporaryDirectory() as out:
        training_args = MaskedDiffusionTrainingArguments(
            output_dir=out, per_device_train_batch_size=64, max_steps=args.steps, learning_rate=3e-3,
            logging_steps=25, save_strategy="no", report_to=[], use_cpu=True)
        MaskedDiffusionTrainer(model=model, args=training_args, train_dataset=train,
                               data_collator=MaskedDiffusionSFTCollator(tokenizer)).train()
    print(f"answer NLL after:  {answer_nll(model.eval(), oracle, prompts):.3f}")


if __name__ == "__main__":
    main()
