"""The ``hf-dlm`` lm-evaluation-harness model on a LLaDA-8B-shaped model: does a 50-item likelihood task run in bf16
without running out of memory, and how many seconds does an item take?

A ``LLaDAModelLM`` with LLaDA-8B-Base's shapes (d_model 4096, 32 heads, MLP 12288, vocabulary 126,464, mask id 126,336,
4096 positions) and random weights, ``--layers`` of its 32 blocks (32 = the full 8B), in bf16, scored on the shipped
``oracle_mc`` task (12-word contexts, four 4-word choices: 4 loglikelihood requests an item) with LLaDA's evaluation
settings (``mc_num`` 128, ``batch_size`` 32, ``is_check_greedy`` off). The oracle tokenizer's ids (< 261) are valid
ids of the 8B vocabulary; the scores of random weights mean nothing — this measures cost. Writes
``benchmarks/results/lm_eval_8b_<device>.json``. Meant for a GPU::

    python benchmarks/lm_eval_8b.py --device cuda --layers 32 --limit 50

On CPU, ``--layers 1 --limit 2 --mc-num 32`` checks that it runs (minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import lm_eval
import torch
from lm_eval.tasks import TaskManager

from hf_dlm import LLaDAConfig, LLaDAModelLM
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.integrations.lm_eval_harness import DiffusionLM

RESULTS = Path(__file__).parent / "results"
TASKS = Path(__file__).parents[1] / "integrations" / "lm_eval" / "tasks"
LLADA_8B = dict(vocab_size=126464, embedding_size=126464, d_model=4096, n_heads=32, n_kv_heads=32,
                mlp_hidden_size=12288, max_sequence_length=4096, rope_theta=500000.0, mask_token_id=126336,
                pad_token_id=126081, eos_token_id=126081, bos_token_id=126080)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--mc-num", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):
        model = LLaDAModelLM(LLaDAConfig(n_layers=args.layers, **LLADA_8B)).to(torch.bfloat16).eval()
    build_seconds = time.perf_counter() - start
    tokenizer = OracleLanguage().tokenizer(model_max_length=4096)
    lm = DiffusionLM(pretrained=model, tokenizer=tokenizer, mc_num=args.mc_num, batch_size=args.batch_size,
                     is_check_greedy=False, device=str(device), show_progress=False)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(model=lm, tasks=["oracle_mc"], limit=args.limit, verbosity="ERROR",
                                      task_manager=TaskManager(include_path=str(TASKS)))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "layers": args.layers, "dtype": "bfloat16",
        "parameters": sum(p.numel() for p in model.parameters()), "limit": args.limit, "mc_num": args.mc_num,
        "batch_size": args.batch_size, "items": results["results"]["oracle_mc"]["sample_len"],
        "seconds": seconds, "seconds_per_item": seconds / args.limit, "build_seconds": build_seconds,
        "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None),
        "accuracy_random_weights": results["results"]["oracle_mc"]["acc,none"],
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"lm_eval_8b_{device.type}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
