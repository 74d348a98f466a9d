"""Overhead of hf-dlm's masked-diffusion decoding loop against a plain reference loop, at LLaDA-8B's vocabulary
(126,464 logits per position, mask id 126336) — issue 20, "a lean loop".

    python benchmarks/decode_overhead.py            # default settings: 5 min on 2 idle CPU cores, 10-30 shared
    python benchmarks/decode_overhead.py --quick    # small settings, a smoke run (< 1 min)
    python benchmarks/decode_overhead.py --parts stub --stub-steps 256 --sample-steps 0 \
        --output decode_overhead_steps256           # LLaDA's 1 token per step at gen_length 256 (7 min)

The **reference loop** (`reference_generate`, below) is a plain re-implementation of LLaDA's published sampler
(Nie et al., 2025, arXiv 2502.09992, Algorithms 4/5; ML-GSAI/LLaDA ``generate.py``): the canvas is the prompt
followed by ``gen_length`` mask ids, decoded block by block; each block's masked count is split evenly over its
steps (the remainder to the first steps); every step calls ``model(x).logits``, perturbs them by Gumbel-max in
float64 when T > 0, proposes ``x0 = argmax``, scores ``x0_p = softmax(logits)[x0]`` in the logits' dtype (−inf
right of the current block and at unmasked positions) and commits the top-k scores of each row. hf-dlm's loop is
``model.generate(...)`` (``MaskedDiffusionGenerationMixin``) with the equivalent settings: ``remasking=
"low_confidence"``, ``suppress_mask_token=False``, ``stop_at_eos=False``, no CFG, no top-k/top-p, the same
temperature. At T > 0 both loops draw their Gumbel noise from the global RNG (seeded identically before every
call, hf-dlm with ``generator=None``), so they see the same noise as long as they draw it the same way.

**Part 1, "loop with a stubbed forward".** The model is a tiny ``LLaDAModelLM`` at the real vocabulary whose
``forward`` is replaced by one that returns precomputed logits (batch, prompt + gen_length, 126464) in fp32 or
bf16. The stub returns a fresh ``clone()`` on every call, in both loops: a real forward allocates a new logits
tensor each call, a loop may legitimately work on it in place, and the clone keeps the stub's tensor intact. The
clone is timed inside the stub and subtracted, so the "loop only" columns measure the loop's own work; the
"total" columns include it (the same cost for both loops). The stub logits are N(0, 1) noise with one peak per
position (8 + 0.125·a permutation of 0..block_length−1 within each block, at a random token) so that the
proposals and the order of their confidences are unique even in bf16: at T = 0 the two loops must then produce
identical tokens, which is asserted (a bf16 tie would otherwise be broken differently by a softmax in bf16, as
the reference does, and one in fp32).

**Part 2, "generate at 8B widths".** A real ``LLaDAModelLM`` with LLaDA-8B's widths (d_model 4096, 32 heads,
32 KV heads, MLP 12288, vocabulary 126464) but ``--model-layers`` layers (default 1; 1.25 B parameters, 2.5 GB in
bf16, 5 GB in fp32), random weights, through both loops at shorter settings. Forward time is measured with
forward hooks and subtracted for the "loop only" columns. Equal tokens are reported, not asserted (in bf16 the
reference scores in bf16 and hf-dlm may not).

**Timing.** Every setting first runs each loop once on a one-block, one-step version (warm-up), then
``--repeats`` repetitions of the pair, alternating which loop goes first. The ratio reported (hf-dlm / reference,
< 1 = hf-dlm faster) is the median over repetitions of the ratio within each back-to-back pair, so a burst of load
from another process spoils one pair rather than the setting; the ratio of the median times is in the JSON too,
and a setting whose times of one loop spread by more than 25 % is flagged ``noisy``. The machine is a shared
2-core CPU: compare ratios, not seconds. The tokens of the first repetition are compared.

**Extra peak memory** of a call = peak resident set during the call − resident set just before it. Before each
call the kernel's high-water mark is reset (``echo 5 > /proc/self/clear_refs`` resets ``VmHWM`` to the current
RSS), then ``VmHWM`` is read from ``/proc/self/status`` after the call. The script re-executes itself with
``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc serves every allocation above 64 KiB by its own mmap and returns it
at free (its default raises that threshold up to 32 MiB and keeps freed chunks on the heap, which would hide
reuse); a calibration allocates a known 256 MiB tensor inside a measured call and records what the method reads
(``memory_check`` in the JSON). The model's weights, the stub logits and the prompt are held before every call, so
only what the loop (plus the forward's activations and logits, the same in both loops) allocates is counted. The
reference, like the published code, keeps the previous step's logits and probabilities in plain local variables,
alive while the next forward runs, so its extra peak at T = 0 is three logits-sized tensors.

Targets (issue 20): loop time ≤ 1.0 × the reference, extra peak memory ≤ the reference's. Writes
benchmarks/results/NAME.json (default ``decode_overhead``) and NAME.png, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}

if __name__ == "__main__" and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
    # see the docstring: exact RSS accounting needs every tensor-sized allocation to be its own mmap
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers.modeling_outputs import MaskedLMOutput  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import hf_dlm  # noqa: E402
from _common import RESULTS, machine, markdown_table, write_json  # noqa: E402
from hf_dlm import LLaDAConfig, LLaDAModelLM  # noqa: E402

VOCAB = 126464  # LLaDA-8B vocab_size = embedding_size
MASK_ID = 126336  # LLaDA-8B mask_token_id
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------------------------- reference loop
def gumbel_perturbed(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Gumbel-max in float64 (``exp(logits) / (−log u)^T``); the logits themselves at T = 0. A function, as in the
    reference, so that its float64 temporaries are freed on return rather than held until the next step."""
    if temperature == 0:
        return logits
    noise = torch.rand_like(logits, dtype=torch.float64)
    return logits.to(torch.float64).exp() / (-torch.log(noise)) ** temperature


@torch.no_grad()
def reference_generate(model, prompt: torch.LongTensor, gen_length: int, block_length: int, steps: int,
                       temperature: float, mask_id: int = MASK_ID) -> torch.LongTensor:
    """LLaDA's low-confidence-remasking sampler, written plainly (see the module docstring)."""
    batch, prompt_length = prompt.shape
    x = torch.full((batch, prompt_length + gen_length), mask_id, dtype=torch.long, device=prompt.device)
    x[:, :prompt_length] = prompt
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    for block in range(num_blocks):
        start = prompt_length + block * block_length
        end = start + block_length
        masked = (x[:, start:end] == mask_id).sum(dim=1, keepdim=True)
        counts = (masked // steps_per_block).repeat(1, steps_per_block)
        counts += (torch.arange(steps_per_block, device=x.device).unsqueeze(0) < masked % steps_per_block).long()
        for step in range(steps_per_block):
            mask_index = x == mask_id
            logits = model(x).logits
            noised = gumbel_perturbed(logits, temperature)
            x0 = torch.argmax(noised, dim=-1)
            p = F.softmax(logits, dim=-1)  # in the logits' dtype, as the reference
            x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
            x0_p[:, end:] = float("-inf")
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.tensor(float("-inf"), dtype=x0_p.dtype))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for row in range(batch):
                chosen = torch.topk(confidence[row], k=int(counts[row, step])).indices
                transfer[row, chosen] = True
            x[transfer] = x0[transfer]
    return x


def hf_dlm_generate(model, prompt: torch.LongTensor, gen_length: int, block_length: int, steps: int,
                    temperature: float) -> torch.LongTensor:
    return model.generate(prompt, max_new_tokens=gen_length, block_length=block_length, steps=steps,
                          temperature=temperature, remasking="low_confidence", suppress_mask_token=False,
                          stop_at_eos=False, cfg_scale=0.0)


LOOPS = {"reference": reference_generate, "hf_dlm": hf_dlm_generate}


# --------------------------------------------------------------------------------------------- models
class ForwardTimer:
    """Counts a model's forward calls and the wall time spent inside them (pre/post forward hooks)."""

    def __init__(self, model):
        self.calls, self.seconds, self._start = 0, 0.0, None
        model.register_forward_pre_hook(self._pre)
        model.register_forward_hook(self._post)

    def _pre(self, module, args):
        self._start = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._start
        self.calls += 1

    def reset(self):
        self.calls, self.seconds = 0, 0.0


class StubLLaDA(LLaDAModelLM):
    """A one-layer LLaDAModelLM whose forward returns a clone of precomputed logits (Part 1)."""

    stub_logits: torch.Tensor | None = None

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        logits = self.stub_logits
        if input_ids is None or input_ids.shape[0] != logits.shape[0] or input_ids.shape[1] > logits.shape[1]:
            raise ValueError(f"stub logits {tuple(logits.shape)} do not fit input_ids "
                             f"{None if input_ids is None else tuple(input_ids.shape)}")
        return MaskedLMOutput(logits=logits[:, :input_ids.shape[1]].clone())


def stub_logits(batch: int, prompt_length: int, gen_length: int, block_length: int, dtype: torch.dtype,
                seed: int) -> torch.Tensor:
    """N(0, 1) logits with one peak per position whose heights are distinct within every block (see docstring)."""
    g = torch.Generator().manual_seed(seed)
    length = prompt_length + gen_length
    logits = torch.randn(batch, length, VOCAB, generator=g)
    heights = torch.cat([torch.randperm(block_length, generator=g)
                         for _ in range(-(-length // block_length))])[:length].float()
    for row in range(batch):
        tokens = torch.randint(0, 126000, (length,), generator=g)  # never the mask id
        logits[row, torch.arange(length), tokens] = 8.0 + 0.125 * heights
    return logits.to(dtype)


def stub_model() -> StubLLaDA:
    config = LLaDAConfig(vocab_size=VOCAB, embedding_size=VOCAB, mask_token_id=MASK_ID, d_model=8, n_layers=1,
                         n_heads=1, mlp_hidden_size=16)
    return StubLLaDA(config).eval()


def width_model(layers: int, dtype: torch.dtype, quick: bool) -> LLaDAModelLM:
    widths = (dict(d_model=512, n_heads=8, n_kv_heads=8, mlp_hidden_size=1376) if quick else
              dict(d_model=4096, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288))
    config = LLaDAConfig(vocab_size=VOCAB, embedding_size=VOCAB, mask_token_id=MASK_ID, n_layers=layers, **widths)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build directly in the target dtype (half the peak for bf16)
    try:
        torch.manual_seed(0)
        model = LLaDAModelLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    return model


# --------------------------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kb("VmHWM") <= _status_kb("VmRSS") + 64


def measured_call(fn):
    """(seconds, extra peak MiB or None, result) of one call."""
    gc.collect()
    exact = _reset_peak()
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM")
    return seconds, ((peak - before) / 1024 if exact else None), result


def memory_check() -> dict:
    size = 256 * 2**20

    def allocate():
        t = torch.ones(size // 4)
        return float(t[-1])

    _, extra, _ = measured_call(allocate)
    return {"allocated_mib": size / 2**20, "measured_extra_peak_mib": extra,
            "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV}}


# --------------------------------------------------------------------------------------------- one setting
def run_setting(model, timer: ForwardTimer, prompt: torch.LongTensor, setting: dict, repeats: int,
                seed: int, assert_equal: bool) -> dict:
    args = dict(gen_length=setting["gen_length"], block_length=setting["block_length"], steps=setting["steps"],
                temperature=setting["temperature"])
    warm = dict(args, gen_length=setting["block_length"], steps=1)
    for loop in LOOPS.values():
        torch.manual_seed(seed)
        loop(model, prompt, **warm)
    times = {name: [] for name in LOOPS}
    forward = {name: [] for name in LOOPS}
    memory = {name: [] for name in LOOPS}
    nfe, tokens = {}, {}
    for rep in range(repeats):
        order = list(LOOPS) if rep % 2 == 0 else list(LOOPS)[::-1]
        for name in order:
            torch.manual_seed(seed)
            timer.reset()
            seconds, extra, out = measured_call(lambda: LOOPS[name](model, prompt, **args))
            times[name].append(seconds)
            forward[name].append(timer.seconds)
            memory[name].append(extra)
            nfe[name] = timer.calls
            if rep == 0:
                tokens[name] = out
    equal = bool(torch.equal(tokens["reference"], tokens["hf_dlm"]))
    still_masked = {name: int((t == MASK_ID).sum()) for name, t in tokens.items()}
    if assert_equal and not equal:
        differ = int((tokens["reference"] != tokens["hf_dlm"]).sum())
        raise AssertionError(f"{setting['label']}: hf-dlm and the reference disagree on {differ} tokens at T = 0")
    row = {**setting, "batch": prompt.shape[0], "prompt_length": prompt.shape[1], "nfe": nfe,
           "tokens_equal": equal, "masks_left": still_masked}
    for name in LOOPS:
        loop_only = [t - f for t, f in zip(times[name], forward[name])]
        mem = [m for m in memory[name] if m is not None]
        row[name] = {"seconds": statistics.median(times[name]), "times": times[name],
                     "forward_seconds": statistics.median(forward[name]),
                     "loop_seconds": statistics.median(loop_only), "loop_times": loop_only,
                     "loop_ms_per_nfe": 1e3 * statistics.median(loop_only) / max(nfe[name], 1),
                     "extra_peak_mib": statistics.median(mem) if mem else None, "extra_peak_mib_all": memory[name]}
    ref, new = row["reference"], row["hf_dlm"]
    # paired: the ratio within each repetition (both members ran back to back), then the median; a burst of load
    # from another process spoils one pair, not the whole setting
    row["time_ratio"] = statistics.median(n / r for n, r in zip(new["times"], ref["times"]))
    row["loop_time_ratio"] = statistics.median(n / r for n, r in zip(new["loop_times"], ref["loop_times"]))
    row["time_ratio_of_medians"] = new["seconds"] / ref["seconds"]
    row["loop_time_ratio_of_medians"] = new["loop_seconds"] / ref["loop_seconds"]
    row["spread"] = max(max(times[name]) / min(times[name]) for name in LOOPS)
    row["noisy"] = row["spread"] > 1.25  # some repetition ran > 25 % slower than another of the same loop
    row["memory_ratio"] = (new["extra_peak_mib"] / ref["extra_peak_mib"]
                           if new["extra_peak_mib"] is not None and ref["extra_peak_mib"] else None)
    row["meets_time_target"] = row["loop_time_ratio"] <= 1.0
    row["meets_memory_target"] = None if row["memory_ratio"] is None else row["memory_ratio"] <= 1.0
    print(f"  {setting['label']:32s} NFE {nfe['hf_dlm']:3d}/{nfe['reference']:3d}  total {new['seconds']:7.2f} s / "
          f"{ref['seconds']:7.2f} s = {row['time_ratio']:.2f}x   loop only {new['loop_ms_per_nfe']:6.1f} / "
          f"{ref['loop_ms_per_nfe']:6.1f} ms per NFE = {row['loop_time_ratio']:.2f}x   extra peak "
          f"{_fmt(new['extra_peak_mib'])} / {_fmt(ref['extra_peak_mib'])} MiB = {_fmt(row['memory_ratio'], 2)}x   "
          f"tokens equal: {equal}{'   NOISY: times spread %.2fx' % row['spread'] if row['noisy'] else ''}",
          flush=True)
    return row


def _fmt(value, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------------------------- main
def _loop_source() -> dict:
    """Which hf-dlm was measured: its folder, git HEAD of that folder's repository if any, and a hash of the
    generation package's sources (tells a before/after run apart even when HEAD did not move)."""
    package = Path(hf_dlm.__file__).parent
    digest = hashlib.sha256()
    for path in sorted((package / "generation").rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    info = {"hf_dlm_path": str(package), "generation_sha256": digest.hexdigest()[:16]}
    for key, folder in (("hf_dlm", package), ("benchmark", Path(__file__).parent)):
        try:
            git = ["git", "-C", str(folder)]
            info[f"{key}_git_head"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                                                     text=True, check=True).stdout.strip()
            info[f"{key}_git_dirty"] = bool(subprocess.run(git + ["status", "--porcelain", "."],
                                                           capture_output=True, text=True, check=True).stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            info[f"{key}_git_head"] = None
    return info


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small settings, a smoke run under a minute")
    parser.add_argument("--output", default=None, help="results name (default decode_overhead[_quick])")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved (reference, hf-dlm) pairs per setting")
    parser.add_argument("--parts", default="stub,model", help="stub, model or both")
    parser.add_argument("--stub-steps", default=None, help="steps of the T = 0 stub settings (default 64)")
    parser.add_argument("--stub-dtypes", default="fp32,bf16")
    parser.add_argument("--sample-steps", type=int, default=None,
                        help="steps of the T = 0.7 stub settings (default 8: float64 Gumbel noise costs ~1.7 s "
                             "per step at this width on 2 cores); 0 skips them")
    parser.add_argument("--model-settings", default=None,
                        help="DTYPE:STEPS,... for Part 2 (default bf16:16,fp32:16)")
    parser.add_argument("--model-layers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    output = args.output or ("decode_overhead_quick" if args.quick else "decode_overhead")
    parts = set(args.parts.split(","))
    if args.quick:
        gen, block, prompt_length = 32, 32, 16
        stub_steps, sample_steps, model_settings = _ints(args.stub_steps or "4"), args.sample_steps or 2, \
            args.model_settings or "bf16:4"
        model_gen = 32
    else:
        gen, block, prompt_length = 256, 32, 32
        stub_steps = _ints(args.stub_steps or "64")
        sample_steps = 8 if args.sample_steps is None else args.sample_steps
        model_settings = args.model_settings or "bf16:16,fp32:16"
        model_gen = 64
    torch.manual_seed(args.seed)
    prompt = torch.randint(0, 126000, (1, prompt_length))
    source = _loop_source()
    print(f"hf-dlm from {source['hf_dlm_path']} (git HEAD {source.get('hf_dlm_git_head')}, generation sources "
          f"{source['generation_sha256']}); {torch.get_num_threads()} threads", flush=True)
    mem_check = memory_check()
    print(f"memory method check: a {mem_check['allocated_mib']:.0f} MiB tensor reads as "
          f"{mem_check['measured_extra_peak_mib']:.1f} MiB extra peak", flush=True)
    rows = []
    started = time.perf_counter()

    if "stub" in parts:
        print(f"Part 1: stubbed forward, vocabulary {VOCAB}, prompt {prompt_length}, gen {gen}, block {block}",
              flush=True)
        model = stub_model()
        timer = ForwardTimer(model)
        for dtype_name in args.stub_dtypes.split(","):
            model.stub_logits = stub_logits(1, prompt_length, gen, block, DTYPES[dtype_name], args.seed)
            plan = [(s, 0.0) for s in stub_steps] + ([(sample_steps, 0.7)] if sample_steps else [])
            for steps, temperature in plan:
                setting = {"part": "stub", "dtype": dtype_name, "temperature": temperature, "gen_length": gen,
                           "block_length": block, "steps": steps,
                           "label": f"stub {dtype_name} T={temperature:g} steps {steps}"}
                rows.append(run_setting(model, timer, prompt, setting, args.repeats, args.seed,
                                        assert_equal=temperature == 0))
            model.stub_logits = None
        del model, timer

    if "model" in parts:
        widths = "d_model 512 (--quick)" if args.quick else "LLaDA-8B widths"
        print(f"Part 2: {args.model_layers}-layer LLaDAModelLM at {widths}, random weights, prompt {prompt_length}, "
              f"gen {model_gen}, block {block}", flush=True)
        model = None
        for spec in model_settings.split(","):
            dtype_name, steps = spec.split(":")
            built = time.perf_counter()
            if model is not None and model.dtype != DTYPES[dtype_name]:
                model = model.to(DTYPES[dtype_name])
            elif model is None:
                model = width_model(args.model_layers, DTYPES[dtype_name], args.quick)
            timer = ForwardTimer(model)
            n_params = sum(p.numel() for p in model.parameters())
            print(f"  model ready in {time.perf_counter() - built:.0f} s: {n_params / 1e9:.2f} B parameters, "
                  f"{dtype_name}", flush=True)
            setting = {"part": "model", "dtype": dtype_name, "temperature": 0.0, "gen_length": model_gen,
                       "block_length": block, "steps": int(steps), "layers": args.model_layers,
                       "parameters": n_params, "widths": "quick" if args.quick else "llada-8b",
                       "label": f"{'d512' if args.quick else '8B-width'} x{args.model_layers} {dtype_name} T=0 "
                                f"steps {steps}"}
            rows.append(run_setting(model, timer, prompt, setting, args.repeats, args.seed, assert_equal=False))
            for hook_dict in (model._forward_pre_hooks, model._forward_hooks):
                hook_dict.clear()
        del model

    payload = {"benchmark": "decode_overhead", "machine": machine(), "source": source, "vocab_size": VOCAB,
               "mask_token_id": MASK_ID, "repeats": args.repeats, "quick": args.quick, "argv": sys.argv[1:],
               "memory_check": mem_check, "total_seconds": time.perf_counter() - started,
               "targets": {"loop_time_ratio": "<= 1.0", "memory_ratio": "<= 1.0"}, "rows": rows}
    path = write_json(output, payload)
    _plot(rows, output)
    print(f"wrote {path} and {RESULTS / (output + '.png')} ({payload['total_seconds'] / 60:.1f} min)")
    print(markdown_table(
        ["setting", "NFE", "hf-dlm / ref, total", "loop only (forward excluded)", "loop ms/NFE hf-dlm", "ref",
         "extra peak MiB hf-dlm", "ref", "memory ratio", "tokens equal"],
        [[r["label"], r["nfe"]["hf_dlm"], round(r["time_ratio"], 2), round(r["loop_time_ratio"], 2),
          round(r["hf_dlm"]["loop_ms_per_nfe"], 1), round(r["reference"]["loop_ms_per_nfe"], 1),
          _fmt(r["hf_dlm"]["extra_peak_mib"], 0), _fmt(r["reference"]["extra_peak_mib"], 0),
          _fmt(r["memory_ratio"], 2), r["tokens_equal"]] for r in rows]))


def _plot(rows: list[dict], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"].replace(" steps ", "\nsteps ") for r in rows]
    x = range(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.5 * len(rows) + 3), 4.2))
    width = 0.38
    axes[0].bar([i - width / 2 for i in x], [r["time_ratio"] for r in rows], width, label="total")
    axes[0].bar([i + width / 2 for i in x], [r["loop_time_ratio"] for r in rows], width,
                label="loop only (forward excluded)")
    axes[0].set(ylabel="hf-dlm time / reference time", title="time (median of back-to-back pairs)")
    axes[1].bar(list(x), [r["memory_ratio"] or 0 for r in rows], 0.6, color="tab:green")
    axes[1].set(ylabel="hf-dlm extra peak / reference extra peak", title="extra peak memory (RSS)")
    for ax in axes:
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(f"decode loop overhead at vocabulary {VOCAB} (target: ≤ 1)", fontsize=10)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{output}.png", dpi=120)


if __name__ == "__main__":
    main()
