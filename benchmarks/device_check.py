"""Runs decoding, the ELBO and a few training steps on an accelerator and checks that greedy decoding gives the
CPU's tokens. Not part of the test suite (CI has no GPU); run where one exists:

    python benchmarks/device_check.py --device cuda --out device_check.json
"""

import argparse
import json
import time

import torch

import hf_dlm  # noqa: F401
from hf_dlm import DreamConfig, DreamModel, LLaDAConfig, LLaDAModelLM
from hf_dlm.evaluation import elbo_log_likelihood
from hf_dlm.training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, TokenIdsDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="device_check.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)}
    torch.manual_seed(0)
    llada = LLaDAModelLM(LLaDAConfig(vocab_size=500, embedding_size=512, d_model=128, n_layers=2, n_heads=4,
                                     n_kv_heads=2, mlp_hidden_size=256, max_sequence_length=256, mask_token_id=511,
                                     pad_token_id=510, eos_token_id=509)).eval()
    dream = DreamModel(DreamConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   mask_token_id=511, pad_token_id=510, eos_token_id=509, bos_token_id=508)).eval()
    prompt = torch.randint(0, 500, (4, 16), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    mask[0, :5] = 0
    settings = dict(max_new_tokens=32, steps=32, block_length=8, stop_at_eos=False)
    for name, model in (("llada", llada), ("dream", dream)):
        cpu = model.generate(prompt, attention_mask=mask, **settings)
        model.to(device)
        gpu = model.generate(prompt.to(device), attention_mask=mask.to(device), **settings).cpu()
        report[f"{name}_greedy_tokens_equal_cpu"] = bool(torch.equal(cpu, gpu))
        report[f"{name}_greedy_token_agreement"] = float((cpu == gpu).float().mean())
        gen = torch.Generator(device=device).manual_seed(0)
        for remasking in ("low_confidence", "random", "margin", "entropy", "origin"):
            out = model.generate(prompt.to(device), remasking=remasking, temperature=1.0, top_p=0.9, generator=gen,
                                 **settings)
            assert not (out == 511).any(), remasking
        out = model.generate(prompt.to(device), threshold=0.5, cfg_scale=1.0, return_dict_in_generate=True, **settings)
        report[f"{name}_threshold_cfg_nfe"] = out.nfe
        est = elbo_log_likelihood(model, prompt[0].to(device), prompt[1].to(device), mc_samples=64, batch_size=32)
        report[f"{name}_elbo"] = [float(est.log_likelihood), float(est.stderr)]
        bf16 = model.to(torch.bfloat16)
        torch.cuda.synchronize() if device.type == "cuda" else None
        start = time.perf_counter()
        bf16.generate(prompt.to(device), **settings)
        torch.cuda.synchronize() if device.type == "cuda" else None
        report[f"{name}_bf16_generate_seconds_32_steps"] = time.perf_counter() - start
        model.float()

    targs = MaskedDiffusionTrainingArguments(output_dir="/tmp/hf_dlm_device_check", max_steps=5, report_to=[],
                                             per_device_train_batch_size=16, save_strategy="no", bf16=device.type == "cuda",
                                             use_cpu=device.type == "cpu", disable_tqdm=True)
    trainer = MaskedDiffusionTrainer(model=llada, args=targs, train_dataset=TokenIdsDataset(torch.randint(0, 500, (64, 32))))
    trainer.train()
    report["train_device"] = str(next(llada.parameters()).device)
    report["train_final_loss"] = trainer.state.log_history[-1].get("train_loss")
    print(json.dumps(report, indent=2))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
