"""Run by tests/test_image_tokens_lm.py under `torchrun --nproc_per_node 2`: ModalitySplitTrainer with text replay on
two CPU processes; each rank writes what it logged and a checksum of its parameters."""

import json
import os
import sys
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

import hf_dlm  # noqa: F401
from hf_dlm.evaluation.digits import load_digits_task
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.multimodal import (ImageTextCollator, ModalitySplitTrainer, ModalitySplitTrainingArguments,
                               add_image_tokens)

out = Path(sys.argv[1])
oracle = OracleLanguage()
tokenizer = oracle.tokenizer()
torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=96,
                                   resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
token_map = add_image_tokens(model, tokenizer, 17, image_grid=(8, 8), generator=torch.Generator().manual_seed(0))
train, _ = load_digits_task()
examples = [{"caption": f"the {oracle.words[30 + int(label)]}", "image_codes": image.view(8, 8)}
            for image, label in zip(train.images[:48], train.labels[:48])]
replay = [{"input_ids": torch.cat([torch.tensor([tokenizer.bos_token_id]), row])}
          for row in oracle.sample(16, 12, seed=3)]
args = ModalitySplitTrainingArguments(output_dir=str(out / "run"), per_device_train_batch_size=4, max_steps=4,
                                      logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
                                      text_replay_fraction=0.25, seed=0)
trainer = ModalitySplitTrainer(model=model, args=args, train_dataset=examples, replay_dataset=replay,
                               data_collator=ImageTextCollator(tokenizer, token_map), image_token_map=token_map)
trainer.train()
logs = [{k: h[k] for k in ("step", "loss", "text_tokens", "image_tokens") if k in h}
        for h in trainer.state.log_history if "text_tokens" in h]
report = {"world_size": args.world_size, "logs": logs,
          "param_sum": float(sum(p.double().sum() for p in model.parameters()))}
(out / f"rank{args.process_index}.json").write_text(json.dumps(report))
# every result is on disk; skip interpreter teardown, where gloo's background threads sometimes abort the process
# ("terminate called without an active exception") after the work is done
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
