"""Run with `torchrun --nproc_per_node 2 ddp_train.py OUT_DIR`: trains a tiny LLaDA for 6 steps on the oracle
corpus with MaskedDiffusionTrainer over gloo, and rank 0 writes "world_size steps" to OUT_DIR/report.txt."""

import os
import sys

import torch

import hf_dlm  # noqa: F401
from hf_dlm import LLaDAConfig, LLaDAModelLM
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.training import MaskedDiffusionTrainer, MaskedDiffusionTrainingArguments, TokenIdsDataset


def main(out_dir: str) -> None:
    oracle = OracleLanguage(seed=0)
    tok = oracle.tokenizer()
    torch.manual_seed(0)
    config = LLaDAConfig(vocab_size=len(tok), embedding_size=len(tok), d_model=32, n_layers=1, n_heads=2,
                         mlp_hidden_size=64, max_sequence_length=32, mask_token_id=tok.mask_token_id,
                         pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    args = MaskedDiffusionTrainingArguments(output_dir=out_dir, per_device_train_batch_size=8, max_steps=6,
                                            report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
                                            ddp_backend="gloo")
    trainer = MaskedDiffusionTrainer(model=LLaDAModelLM(config), args=args,
                                     train_dataset=TokenIdsDataset(oracle.sample(200, 16, seed=1)))
    trainer.train()
    if trainer.args.process_index == 0:
        with open(f"{out_dir}/report.txt", "w") as f:
            f.write(f"{trainer.args.world_size} {trainer.state.global_step}\n")
    # shut the process group down in step on both ranks: a rank that exits while its peer still tears down gloo
    # can make the peer abort at interpreter exit
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # every result is on disk; skip interpreter teardown, where gloo's background threads sometimes abort the
    # process ("terminate called without an active exception") after the work is done
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
