"""Run with `torchrun --nproc_per_node 2 ddp_dimo.py OUT_DIR MODE`: distils a tiny LLaDA teacher with DiMOTrainer
for 3 steps over gloo in memory mode MODE (full | lora). Every rank writes the world size, the step count, whether
each model is wrapped in DDP and checksums of the generator and auxiliary parameters to OUT_DIR/rank{R}.json."""

import json
import os
import sys

import torch

import hf_dlm  # noqa: F401
from hf_dlm import LLaDAConfig, LLaDAModelLM
from hf_dlm.training.dimo import ConditionDataset, DiMOConfig, DiMOTrainer


def main(out_dir: str, mode: str) -> None:
    torch.manual_seed(0)
    config = LLaDAConfig(vocab_size=40, embedding_size=40, d_model=32, n_layers=1, n_heads=2, mlp_hidden_size=64,
                         max_sequence_length=32, mask_token_id=39, pad_token_id=38, eos_token_id=37, bos_token_id=36)
    teacher = LLaDAModelLM(config).eval()
    args = DiMOConfig(output_dir=out_dir, per_device_train_batch_size=4, max_steps=3, learning_rate=1e-3,
                      generation_length=8, memory_mode=mode, lora_r=4, report_to=[], use_cpu=True, save_strategy="no",
                      disable_tqdm=True, ddp_backend="gloo", seed=0, ema_decay=0.9)
    trainer = DiMOTrainer(teacher, args, train_dataset=ConditionDataset.from_prompts(torch.full((32, 1), 36)))
    trainer.train()
    wrapped = {"generator": type(trainer.model_wrapped).__name__,
               "auxiliary": type(trainer._auxiliary_wrapped).__name__ if trainer._auxiliary_wrapped is not None
               else "adapter"}
    sums = {role: float(sum(p.double().sum() for p in trainer._trainable(role).values()))
            for role in ("generator", "auxiliary")}
    with open(f"{out_dir}/rank{trainer.args.process_index}.json", "w") as f:
        json.dump({"world_size": trainer.args.world_size, "steps": trainer.state.global_step, "wrapped": wrapped,
                   "sums": sums}, f)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    # every result is on disk; skip interpreter teardown, where gloo's background threads sometimes abort the
    # process ("terminate called without an active exception") after the work is done
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
