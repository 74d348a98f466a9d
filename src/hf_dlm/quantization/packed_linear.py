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
full-precision weight is kept between calls.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .importance import block_bounds
from .triton_kernel import packed_matmul, triton_available


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
        kernel: ``"torch"`` (reference), ``"triton"`` (GPU kernel) or ``"auto"``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = False, bits: int = 2,
                 block_size: int = 128, kernel: str = "auto", dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
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
        if self.kernel == "torch" or not x.is_cuda:
            return False
        if self.kernel == "triton" and not triton_available():
            raise RuntimeError("`kernel='triton'` needs the `triton` package on a CUDA device.")
        return triton_available()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """y = Σ_{g,k} α_r,g,k ⊙ (B_{g,k} (α_c,g,k ⊙ x_g)) (+ bias).

        On CUDA with Triton the kernel evaluates this sum from the packed bits. In torch, few tokens take the sum as
        written (inputs scaled by α_c, one matmul per chunk of sign planes scaled by α_r); from ``in_features``
        tokens on it is cheaper to sum the planes into a transient dense Ŵ first (`dequantize`) and run one dense
        matmul — the same sum in another order. Either way nothing dense outlives the call."""
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
        ``signs[g]`` (K_g, n, |g|)."""
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
