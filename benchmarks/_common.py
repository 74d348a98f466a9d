"""Helpers shared by the benchmark scripts: timing, sampling from the reference models, JSON + markdown output."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

RESULTS = Path(__file__).parent / "results"


def median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, list[float], object]:
    """Run ``fn`` ``repeats`` times; return the median wall time, all times, and the first result."""
    times, first = [], None
    for i in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if i == 0:
            first = result
    return statistics.median(times), times, first


@torch.no_grad()
def sample_mdm(model, tokenizer, num: int, length: int, steps: int, remasking: str, temperature: float,
               top_p: float, batch_size: int, seed: int):
    """Unconditional masked-diffusion samples: (word ids, total NFE)."""
    out, nfe = [], 0
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        empty = torch.empty(n, 0, dtype=torch.long)
        result = model.generate(empty, max_new_tokens=length, steps=steps, block_length=length, remasking=remasking,
                                temperature=temperature, top_p=top_p, suppress_tokens=list(tokenizer.all_special_ids),
                                stop_at_eos=False, return_dict_in_generate=True, generator=generator)
        out.append(result.sequences)
        nfe += result.nfe
    return torch.cat(out), nfe


@torch.no_grad()
def sample_ar(model, tokenizer, num: int, length: int, temperature: float, top_p: float, batch_size: int,
              seed: int):
    """Ancestral samples of the GPT-2 baseline from BOS (special tokens suppressed): (word ids, NFE per batch)."""
    out = []
    torch.manual_seed(seed)
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        bos = torch.full((n, 1), tokenizer.bos_token_id)
        seq = model.generate(bos, attention_mask=torch.ones_like(bos), do_sample=True, temperature=temperature,
                             top_k=0, top_p=top_p, max_new_tokens=length, min_new_tokens=length,
                             suppress_tokens=list(tokenizer.all_special_ids), pad_token_id=tokenizer.pad_token_id)
        out.append(seq[:, 1:])
    return torch.cat(out), length * ((num + batch_size - 1) // batch_size)


def machine() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"}


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
