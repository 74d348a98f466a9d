"""`QuantDLLMLinear`: a linear layer stored as packed K-order row-column binarization (Quant-dLLM, arXiv:2510.03274).

Storage, for ``in_features = m``, ``out_features = n``, average order ``bits`` and column blocks of ``block_size``
(G blocks; block g has order K_g, Σ_g K_g·|g| = bits·m exactly — ABMP's guarantee):

- ``weight`` — uint8 (n, ⌈bits·m/8⌉): the sign planes B_{g,k}, one bit per weight per plane, 8 per byte (bit i of
  a byte is column 8c + i; 1 = +1). Planes are laid side by side, block-major, order-minor. The packed signs sit
  under the name ``weight`` on purpose: transformers without ``hf_dlm`` refuses a uint8 tensor of this shape for
  an ``nn.Linear`` weight (a size-mismatch error) instead of silently loading random weights.
- ``row_scale`` — fp16 (n, bits·G): α_r of each plane.
- ``col_scale`` — fp16 (bits·m,): α_c of each plane's columns.
- ``block_orders`` — uint8 (G,): K_g.

The forward computes y = Σ_{g,k} α_r,g,k ⊙ (B_{g,k} (α_c,g,k ⊙ x_g)) from the packed bits each call; no
full-precision weight is kept between calls. On CPU the compiled kernels of `cpu_kernel` (issue 26) never form the
dense weight: lookup tables of partial sums (T-MAC, arXiv:2407.00088) for few tokens, AMX tile products of the sign
bits with exact bf16 pieces of the scaled inputs for some more (float32 inputs, CPUs with AMX-BF16), dense tiles of a
slice of the rows + GEMM for many; on CUDA the Triton kernel; everywhere else the pure-torch path, which is also the
reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

from .configuration import KERNELS
from .cpu_kernel import cpu_kernel
from .importance import block_bounds
from .triton_kernel import packed_matmul, triton_available

#: CPU kernel choice (see `QuantDLLMLinear` and benchmarks/packed_linear.py, whose crossover section measures it):
#: with every sign plane on 32-column boundaries (block widths multiples of 32 — the 128-column default) and an
#: AVX-512 build, below ``LUT16_MAX_TOKENS`` tokens the register-table kernel (``lut16_matmul``); for other layouts
#: below ``LUT_MAX_TOKENS`` tokens the byte-table kernel (``lut_matmul``); from there on dense tiles + GEMM
#: (``tile_matmul``, cost ≈ one dense matmul + one pass over the bits).
LUT16_MAX_TOKENS = 96
#: bf16 inputs switch to tiles earlier: their tile GEMM runs in bf16 (AMX/AVX512-BF16 through oneDNN), several
#: times faster than the float32 one, while the tables cost the same for both dtypes.
LUT16_MAX_TOKENS_BF16 = 32
LUT_MAX_TOKENS = 8
#: float32 inputs from ``AMX_MIN_TOKENS`` up to (not including) ``AMX_MAX_TOKENS`` tokens take the AMX tile-product
#: kernel (``amx_matmul``) where the CPU and the OS offer AMX-BF16 and the planes are 32-column aligned: on the
#: LLaDA-8B-wide layers it beats the register tables and the float32 tiles there (the crossover section of
#: benchmarks/packed_linear.py).
AMX_MIN_TOKENS = 16
AMX_MAX_TOKENS = 160
#: Layers of at most this many weights (dense float32 ≤ 1 MiB: it sits in L2 cache, as in the 128-wide demo model)
#: switch from the tables to dense tiles already at ``SMALL_LAYER_TILE_TOKENS`` tokens: there the dense GEMM is
#: compute-bound and the one-off dequantization of the whole (tiny) weight costs less than the table lookups.
SMALL_LAYER_WEIGHTS = 1 << 18
SMALL_LAYER_TILE_TOKENS = 32
#: The AMX kernel keeps the bf16 pieces of α_c ⊙ x for a chunk of tokens (6 bytes per token and plane column); the
#: chunk is the largest multiple of 16 tokens (≤ 256) whose pieces fit this many bytes, so they stay in L2 cache
#: while every 16 output rows re-read them.
AMX_CHUNK_BYTES = 2 << 20
#: Tokens per table pass of the register-table kernel (1, 2, 4 or 8): 8 fills the 32 vector registers.
LUT16_TOKEN_TILE = 8
#: Tokens per pass and bytes per sweep of the byte-table kernel (measured: one token and one sweep of the whole
#: row are fastest; its table is 256 floats per packed byte per token).
LUT_TOKEN_TILE = 1
LUT_CHUNK_BYTES = 1 << 30
#: The many-token path dequantizes this fraction of the output rows at a time (its only large temporary)...
TILE_FRACTION = 0.1
#: ...but never fewer rows than this: MKL's fp32 GEMM loses ≈ 2× below 256 output columns.
TILE_MIN_ROWS = 384
#: bf16 inputs use half the fraction, with at least ``TILE_MIN_ROWS_BF16`` rows (``TILE_MIN_ROWS_BF16_MANY`` from
#: ``TILE_MANY_TOKENS`` tokens on): oneDNN's bf16 GEMM packs its own copy of the tile and more scratch the more
#: tokens it gets, so the call's transient memory is well above the tile's; measured at 4096 × 4096
#: (benchmarks/packed_linear.py), 512 tokens: 384-row tiles 14.8 % of the bf16 weight, 192 rows 8.2 %, 128 rows
#: 4.3 % for 1.05× the time; 64 tokens: 384 rows 10.2 %, 256 rows 7.0 % for 1.1× the time.
TILE_FRACTION_BF16 = 0.05
TILE_MIN_ROWS_BF16 = 256
TILE_MIN_ROWS_BF16_MANY = 128
TILE_MANY_TOKENS = 256


def tile_rows(out_features: int, dtype: torch.dtype, tokens: int = 1) -> int:
    """Output rows per dense tile of ``tile_matmul`` for ``tokens`` inputs of ``dtype`` (see ``TILE_FRACTION``)."""
    if dtype == torch.bfloat16:
        least = TILE_MIN_ROWS_BF16_MANY if tokens >= TILE_MANY_TOKENS else TILE_MIN_ROWS_BF16
        return max(least, int(TILE_FRACTION_BF16 * out_features) // 64 * 64)
    return max(TILE_MIN_ROWS, int(TILE_FRACTION * out_features) // 64 * 64)


def amx_chunk_tokens(packed_width: int) -> int:
    """Tokens per pass of ``amx_matmul`` for a layer of ``packed_width`` plane columns (see ``AMX_CHUNK_BYTES``)."""
    return max(16, min(256, AMX_CHUNK_BYTES // (6 * max(packed_width, 1)) // 16 * 16))


def pack_signs(signs: torch.Tensor) -> torch.Tensor:
    """(n, P) signs (bool, or ±1 numbers) → (n, ⌈P/8⌉) uint8, little-endian bit order within a byte."""
    bits = (signs > 0) if signs.dtype != torch.bool else signs
    rows, width = bits.shape
    padded = torch.zeros(rows, math.ceil(width / 8) * 8, dtype=torch.uint8, device=bits.device)
    padded[:, :width] = bits.to(torch.uint8)
    weights = (1 << torch.arange(8, device=bits.device, dtype=torch.uint8))
    return (padded.view(rows, -1, 8) * weights).sum(-1, dtype=torch.uint8)


def unpack_signs(packed: torch.Tensor, width: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, ⌈P/8⌉) uint8 → (n, ``width``) ±1 of ``dtype``."""
    shifts = torch.arange(8, device=packed.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(packed.shape[0], -1)[:, :width].to(dtype) * 2 - 1


class QuantDLLMLinear(nn.Module):
    """Drop-in replacement of ``nn.Linear`` holding a Quant-dLLM K-order binarized weight (see module docstring).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        bits: average binary order (sign planes per weight).
        block_size: columns per block; a shorter last block holds the remainder.
        kernel: which forward runs (the choice is made per call, from the input's device):

            - ``"auto"`` (default): on CUDA the Triton kernel when Triton imports, else the torch path; on CPU the
              compiled kernels of `cpu_kernel` (built on first use; the torch path, with a logged warning, when
              they cannot be built) — T-MAC-style lookup tables (arXiv:2407.00088) below ``LUT16_MAX_TOKENS``
              tokens (``LUT16_MAX_TOKENS_BF16`` for bf16 inputs, ``LUT_MAX_TOKENS`` for layouts whose planes are
              not 32-column aligned), for float32 inputs from ``AMX_MIN_TOKENS`` to ``AMX_MAX_TOKENS`` the AMX
              kernel where the CPU has AMX-BF16, dense tiles of a slice of the rows + GEMM from there on
              (``tile_rows``), and on layers of at most ``SMALL_LAYER_WEIGHTS`` weights tiles already from
              ``SMALL_LAYER_TILE_TOKENS`` tokens (`cpu_path` names the choice). What a call needs besides the input
              (plane layout, float32 column scales, the choice's inputs) is computed once per layer and reused
              until a buffer is edited or replaced — never a dense weight. Inputs that require grad take the torch
              path (the compiled kernels have no backward).
            - ``"cpu"``: the compiled CPU kernels, refused (`RuntimeError`) when they cannot be built, the input is
              not on CPU or it requires grad.
            - ``"triton"``: the GPU kernel, refused when Triton or CUDA is missing.
            - ``"torch"``: the pure-torch reference path everywhere.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, bits: int = 2,
                 block_size: int = 128, kernel: str = "auto", dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}.")
        self.in_features = in_features
        self.out_features = out_features
        self.bits = bits
        self.block_size = block_size
        self.kernel = kernel
        groups = len(block_bounds(in_features, block_size))
        width = bits * in_features
        self.weight = nn.Buffer(torch.zeros(out_features, math.ceil(width / 8), dtype=torch.uint8, device=device))
        self.row_scale = nn.Buffer(torch.ones(out_features, bits * groups, dtype=torch.float16, device=device))
        self.col_scale = nn.Buffer(torch.ones(width, dtype=torch.float16, device=device))
        self.block_orders = nn.Buffer(torch.full((groups,), bits, dtype=torch.uint8, device=device))
        self.bias = nn.Buffer(torch.zeros(out_features, dtype=dtype or torch.float32, device=device)) if bias else None

    @property
    def signs(self) -> torch.Tensor:
        """The packed sign planes (an alias of ``weight``)."""
        return self.weight

    @property
    def num_groups(self) -> int:
        return self.block_orders.numel()

    @property
    def packed_width(self) -> int:
        """P = bits · in_features: columns of all sign planes side by side."""
        return self.bits * self.in_features

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"block_size={self.block_size}, bias={self.bias is not None}")

    def layout(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For each of the P plane columns: the input column it reads (``input_index``) and its plane
        (``plane_index``, the column of ``row_scale``). Derived from ``block_orders``; checked for consistency."""
        device = self.block_orders.device
        orders = self.block_orders.long()
        bounds = block_bounds(self.in_features, self.block_size)
        starts = torch.tensor([s for s, _ in bounds], device=device)
        sizes = torch.tensor([e - s for s, e in bounds], device=device)
        plane_block = torch.repeat_interleave(torch.arange(len(bounds), device=device), orders)
        plane_size = sizes[plane_block]
        if plane_block.numel() != self.row_scale.shape[1] or int(plane_size.sum()) != self.packed_width:
            raise ValueError(f"block_orders {orders.tolist()} of this {type(self).__name__} do not average "
                             f"bits={self.bits} over blocks of {self.block_size} columns: the checkpoint does not "
                             "match its quantization config.")
        plane_index = torch.repeat_interleave(torch.arange(plane_block.numel(), device=device), plane_size)
        plane_start = torch.cumsum(plane_size, 0) - plane_size
        offset = torch.arange(self.packed_width, device=device) - plane_start[plane_index]
        return starts[plane_block[plane_index]] + offset, plane_index

    def plane_meta(self) -> torch.Tensor:
        """int64 (planes, 3) on CPU: for each plane (block-major, order-minor) its first packed column, its width
        and its first input column — the layout the compiled CPU kernels read. Cached until ``block_orders``
        changes (a load or an in-place edit bumps its version); refused like `layout` when inconsistent."""
        key = (self.block_orders.data_ptr(), self.block_orders._version, self.in_features, self.block_size)
        cached = getattr(self, "_plane_meta_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        orders = [int(k) for k in self.block_orders.tolist()]
        rows, cursor = [], 0
        for (start, end), order in zip(block_bounds(self.in_features, self.block_size), orders):
            for _ in range(order):
                rows.append((cursor, end - start, start))
                cursor += end - start
        if len(orders) != len(block_bounds(self.in_features, self.block_size)) or \
                len(rows) != self.row_scale.shape[1] or cursor != self.packed_width:
            raise ValueError(f"block_orders {orders} of this {type(self).__name__} do not average "
                             f"bits={self.bits} over blocks of {self.block_size} columns: the checkpoint does not "
                             "match its quantization config.")
        meta = torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)
        self._plane_meta_cache = (key, meta)
        self._planes_aligned = bool(((meta[:, :2] % 32) == 0).all())
        return meta

    def cpu_path(self, tokens: int, dtype: torch.dtype = torch.float32) -> str:
        """Which compiled CPU kernel a call with ``tokens`` rows of ``dtype`` takes: ``"amx"``, ``"lut16"``,
        ``"lut"`` or ``"tile"`` (``"torch"`` when the kernels could not be built)."""
        kernel = cpu_kernel()
        if kernel is None:
            return "torch"
        return self._cpu_state(kernel).path(tokens, dtype)

    def _cpu_state(self, kernel: ModuleType) -> _CpuState:
        """Per-layer metadata of the compiled path (plane layout, float32 column scales, which kernels apply),
        computed once and reused until a buffer is replaced or edited in place (its version counter moves). It
        holds no dense weight: the packed bits are used as stored."""
        buffers = self._buffers
        tensors = (buffers["weight"], buffers["row_scale"], buffers["col_scale"], buffers["block_orders"])
        versions = (tensors[0]._version, tensors[1]._version, tensors[2]._version, tensors[3]._version)
        cached = self.__dict__.get("_cpu_state_cache")
        if cached is not None and cached.kernel is kernel and cached.versions == versions and \
                all(a is b for a, b in zip(cached.tensors, tensors)):
            return cached
        key = (tensors, versions)
        state = _CpuState(self, kernel, key)
        self.__dict__["_cpu_state_cache"] = state
        return state

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> QuantDLLMLinear:
        # .to() / .cuda() / .half() replace the buffers: drop the cached state so that it does not keep the old
        # (CPU) tensors alive; the next CPU forward rebuilds it
        self.__dict__.pop("_cpu_state_cache", None)
        # the scales are part of the stored 2-bit format (fp16): a dtype cast of the model (`.to(torch.bfloat16)`)
        # moves them but keeps their dtype and values, as transformers keeps quantized weights out of such casts
        scales = {name: self._buffers[name] for name in ("row_scale", "col_scale")}
        super()._apply(fn, recurse)
        for name, before in scales.items():
            after = self._buffers[name]
            if after.dtype != before.dtype:
                self._buffers[name] = before.to(after.device)
        return self

    def _chunks(self) -> list[tuple[int, int]]:
        step = max(8, (self.in_features // 8) * 8)
        return [(start, min(start + step, self.packed_width)) for start in range(0, self.packed_width, step)]

    def _plane_weights(self, start: int, end: int, plane_index: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """α_r ⊙ B for plane columns [start, end) — (n, end − start)."""
        signs = unpack_signs(self.weight[:, start // 8: math.ceil(end / 8)], end - start + start % 8, dtype)
        signs = signs[:, start % 8:]
        return signs * self.row_scale.to(dtype)[:, plane_index[start:end]]

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense weight Ŵ = Σ (α_r α_cᵀ) ⊙ B, (out_features, in_features)."""
        input_index, plane_index = self.layout()
        dense = torch.zeros(self.out_features, self.in_features, dtype=dtype, device=self.weight.device)
        col_scale = self.col_scale.to(dtype)
        for start, end in self._chunks():
            part = self._plane_weights(start, end, plane_index, dtype) * col_scale[start:end]
            dense.index_add_(1, input_index[start:end], part)
        return dense

    def _use_triton(self, x: torch.Tensor) -> bool:
        if self.kernel == "triton" and not (x.is_cuda and triton_available()):
            raise RuntimeError(f"`kernel='triton'` needs the `triton` package and a CUDA input, got an input on "
                               f"{x.device} (triton importable: {triton_available()}).")
        if self.kernel not in ("auto", "triton") or not x.is_cuda:
            return False
        return triton_available()

    def _use_cpu_kernel(self, x: torch.Tensor) -> bool:
        if self.kernel == "cpu":
            if x.device.type != "cpu" or cpu_kernel() is None:
                raise RuntimeError(f"`kernel='cpu'` needs a CPU input and the compiled CPU kernels, got an input on "
                                   f"{x.device} (kernels built: {cpu_kernel() is not None}; see the log).")
            if x.requires_grad and torch.is_grad_enabled():
                raise RuntimeError("`kernel='cpu'` has no backward: the input requires grad (run under "
                                   "torch.no_grad(), or use kernel='auto' / 'torch', which differentiate).")
            return True
        if self.kernel != "auto" or x.device.type != "cpu" or (x.requires_grad and torch.is_grad_enabled()):
            return False
        return cpu_kernel() is not None

    def _cpu_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled CPU kernels (`cpu_kernel`): packed bits in, no dense weight; float32 accumulation."""
        kernel = cpu_kernel()
        state = self._cpu_state(kernel)
        flat = x.reshape(-1, self.in_features)
        out = state.run(flat)
        if out.dtype != x.dtype:
            out = out.to(x.dtype)
        out = out.view(*x.shape[:-1], self.out_features)
        return out + self.bias.to(out.dtype) if self.bias is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = Σ_{g,k} α_r,g,k ⊙ (B_{g,k} (α_c,g,k ⊙ x_g)) (+ bias).

        On CUDA with Triton the kernel evaluates this sum from the packed bits. In torch, few tokens take the sum as
        written (inputs scaled by α_c, one matmul per chunk of sign planes scaled by α_r); from ``in_features``
        tokens on it is cheaper to sum the planes into a transient dense Ŵ first (`dequantize`) and run one dense
        matmul — the same sum in another order. Either way nothing dense outlives the call.

        On CPU (``kernel="auto"`` or ``"cpu"``) the compiled kernels compute the same sum from the packed bits with
        no dense weight at all (see the class docstring for the choice)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"`x` must end with in_features={self.in_features} features, got shape "
                             f"{tuple(x.shape)}.")
        if self._use_cpu_kernel(x):
            return self._cpu_forward(x)
        tokens = x.numel() // max(self.in_features, 1)
        if not self._use_triton(x) and tokens >= self.in_features:
            out = x @ self.dequantize(x.dtype).T
            return out + self.bias.to(out.dtype) if self.bias is not None else out
        input_index, plane_index = self.layout()
        scaled = x[..., input_index] * self.col_scale.to(x.dtype)  # α_c ⊙ x, gathered per plane column
        if self._use_triton(x):
            out = packed_matmul(scaled.reshape(-1, self.packed_width), self.weight, self.row_scale, plane_index)
            out = out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        else:
            out = None
            for start, end in self._chunks():
                part = scaled[..., start:end] @ self._plane_weights(start, end, plane_index, x.dtype).T
                out = part if out is None else out + part
        return out + self.bias.to(out.dtype) if self.bias is not None else out

    @classmethod
    def from_factors(cls, block_orders: list[int], row_scales: list[torch.Tensor], col_scales: list[torch.Tensor],
                     signs: list[torch.Tensor], in_features: int, out_features: int, bits: int, block_size: int,
                     bias: torch.Tensor | None = None, kernel: str = "auto") -> QuantDLLMLinear:
        """Pack per-block factors: for block g, ``row_scales[g]`` (K_g, n), ``col_scales[g]`` (K_g, |g|),
        ``signs[g]`` (K_g, n, |g|) as ±1 numbers or bools (True = +1)."""
        device = signs[0].device
        layer = cls(in_features, out_features, bias=bias is not None, bits=bits, block_size=block_size,
                    kernel=kernel, dtype=bias.dtype if bias is not None else None, device=device)
        layer.block_orders.copy_(torch.tensor(block_orders, dtype=torch.uint8))
        planes = [s for block in signs for s in block]
        layer.weight.copy_(pack_signs(torch.cat(planes, dim=1)))
        layer.row_scale.copy_(torch.cat([r for block in row_scales for r in block.unsqueeze(-1)], dim=1).half())
        layer.col_scale.copy_(torch.cat([c for block in col_scales for c in block]).half())
        if bias is not None:
            layer.bias.copy_(bias)
        layer.layout()  # validates the block orders
        return layer


def _no_cpu_state() -> None:
    return None


class _CpuState:
    """What the compiled CPU path of one `QuantDLLMLinear` needs on every call, computed once (see
    `QuantDLLMLinear._cpu_state`): the plane layout, contiguous packed tensors, float32 column scales, whether the
    planes are 32-column aligned and which kernels the build offers. Kept small and per call allocation-free: on a
    128-wide layer the Python work around a kernel call is a large share of its cost."""

    __slots__ = ("tensors", "versions", "kernel", "packed", "row_scale", "col_scale", "meta", "lut16", "amx",
                 "tile_rows", "amx_chunk", "small")

    def __init__(self, layer: QuantDLLMLinear, kernel: ModuleType, key: tuple) -> None:
        self.tensors, self.versions = key
        self.kernel = kernel
        self.meta = layer.plane_meta()
        self.packed = layer.weight.contiguous()
        self.row_scale = layer.row_scale.contiguous()
        self.col_scale = layer.col_scale.float().contiguous()
        aligned = layer._planes_aligned
        self.lut16 = aligned and bool(kernel.lut16_available())
        self.amx = aligned and bool(getattr(kernel, "amx_available", lambda: False)())
        n = layer.out_features
        self.tile_rows = (tile_rows(n, torch.float32), tile_rows(n, torch.bfloat16),
                          tile_rows(n, torch.bfloat16, TILE_MANY_TOKENS))
        self.amx_chunk = amx_chunk_tokens(layer.packed_width)
        self.small = layer.in_features * layer.out_features <= SMALL_LAYER_WEIGHTS

    def __deepcopy__(self, memo: dict) -> None:
        return None  # a copied layer rebuilds its own state (this one holds the compiled module, not copyable)

    def __reduce__(self) -> tuple:
        return (_no_cpu_state, ())  # pickling a layer (torch.save of a module) drops the cache the same way

    def path(self, tokens: int, dtype: torch.dtype) -> str:
        if self.small and tokens >= SMALL_LAYER_TILE_TOKENS:
            return "tile"
        if dtype == torch.bfloat16:
            if self.lut16:
                return "lut16" if tokens < LUT16_MAX_TOKENS_BF16 else "tile"
            return "lut" if tokens < LUT_MAX_TOKENS else "tile"
        if self.amx and not self.small and AMX_MIN_TOKENS <= tokens < AMX_MAX_TOKENS:
            return "amx"
        if self.lut16:
            return "lut16" if tokens < LUT16_MAX_TOKENS else "tile"
        return "lut" if tokens < LUT_MAX_TOKENS else "tile"

    def run(self, flat: torch.Tensor) -> torch.Tensor:
        """(tokens, in_features) → (tokens, out_features): float32, or bfloat16 for bf16 inputs on the tile path."""
        dtype = flat.dtype
        path = self.path(flat.shape[0], dtype)
        kernel = self.kernel
        if path == "tile" or path == "amx":
            compute = flat if dtype == torch.float32 or dtype == torch.bfloat16 else flat.float()
            if not compute.is_contiguous():
                compute = compute.contiguous()
            if path == "amx":
                return kernel.amx_matmul(compute, self.packed, self.row_scale, self.col_scale, self.meta,
                                         self.amx_chunk)
            if compute.dtype == torch.bfloat16:
                rows = self.tile_rows[2] if compute.shape[0] >= TILE_MANY_TOKENS else self.tile_rows[1]
            else:
                rows = self.tile_rows[0]
            return kernel.tile_matmul(compute, self.packed, self.row_scale, self.col_scale, self.meta, rows)
        compute = flat if dtype == torch.float32 else flat.float()
        if not compute.is_contiguous():
            compute = compute.contiguous()
        if path == "lut16":
            return kernel.lut16_matmul(compute, self.packed, self.row_scale, self.col_scale, self.meta,
                                       LUT16_TOKEN_TILE)
        return kernel.lut_matmul(compute, self.packed, self.row_scale, self.col_scale, self.meta, LUT_TOKEN_TILE,
                                 LUT_CHUNK_BYTES)


def linear_storage_bytes(layer: QuantDLLMLinear) -> dict[str, int]:
    """Bytes of each stored tensor of a packed layer."""
    out = {name: t.numel() * t.element_size() for name, t in
           (("signs", layer.weight), ("row_scale", layer.row_scale), ("col_scale", layer.col_scale),
            ("block_orders", layer.block_orders))}
    if layer.bias is not None:
        out["bias"] = layer.bias.numel() * layer.bias.element_size()
    return out


def quantization_report(model: nn.Module) -> dict:
    """Bits per weight and bytes per module of a (partly) quantized model.

    Returns ``{"modules": {name: {...}}, "quantized_weights", "sign_bits_per_weight", "bits_per_weight",
    "quantized_bytes", "model_bytes"}``: ``sign_bits_per_weight`` counts the B_k planes only, ``bits_per_weight``
    adds the fp16 scales and block orders; ``model_bytes`` is every parameter and buffer of the model."""
    modules, weights, sign_bits, total_bits = {}, 0, 0, 0
    for name, module in model.named_modules():
        if isinstance(module, QuantDLLMLinear):
            parts = linear_storage_bytes(module)
            count = module.in_features * module.out_features
            stored = sum(v for k, v in parts.items() if k != "bias")
            orders = module.block_orders.long()
            sizes = torch.tensor([e - s for s, e in block_bounds(module.in_features, module.block_size)])
            planes_bits = int((orders.cpu() * sizes).sum()) * module.out_features
            modules[name] = {"in_features": module.in_features, "out_features": module.out_features,
                             "bytes": parts, "sign_bits_per_weight": planes_bits / count,
                             "bits_per_weight": 8 * stored / count, "block_orders": orders.tolist()}
            weights += count
            sign_bits += planes_bits
            total_bits += 8 * stored
    tensors = list(model.parameters()) + list(model.buffers())
    seen, model_bytes = set(), 0
    for t in tensors:
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        model_bytes += t.numel() * t.element_size()
    return {"modules": modules, "quantized_weights": weights,
            "sign_bits_per_weight": sign_bits / weights if weights else 0.0,
            "bits_per_weight": total_bits / weights if weights else 0.0,
            "quantized_bytes": total_bits // 8, "model_bytes": model_bytes}


__all__ = ["QuantDLLMLinear", "linear_storage_bytes", "pack_signs", "quantization_report", "unpack_signs"]
