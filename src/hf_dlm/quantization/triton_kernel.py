"""Optional Triton kernel for `QuantDLLMLinear` on CUDA: reads the packed sign bits directly (no unpacked weight
in memory). The torch path in ``packed_linear.py`` is the reference and the fallback; both compute
y[m, o] = Σ_c xs[m, c] · α_r[o, plane(c)] · B[o, c] with xs = α_c ⊙ x gathered per plane column."""

from __future__ import annotations

import functools

import torch


@functools.cache
def triton_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:  # optional dependency (the `gpu` extra): triton is absent on CPU-only installs
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _kernel():
    import triton  # optional dependency: only reached once triton_available() said it imports
    import triton.language as tl

    @triton.jit
    def packed_matmul_kernel(x_ptr, packed_ptr, scale_ptr, plane_ptr, out_ptr, M, N, P, planes,
                             stride_xm, stride_pn, stride_sn, stride_om,
                             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                             IEEE: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, P, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            k_ok = rk < P
            a = tl.load(x_ptr + rm[:, None] * stride_xm + rk[None, :], mask=(rm[:, None] < M) & k_ok[None, :],
                        other=0.0).to(tl.float32)
            byte = tl.load(packed_ptr + rn[:, None] * stride_pn + (rk // 8)[None, :],
                           mask=(rn[:, None] < N) & k_ok[None, :], other=0)
            bit = (byte.to(tl.int32) >> (rk % 8)[None, :]) & 1
            plane = tl.load(plane_ptr + rk, mask=k_ok, other=0)
            scale = tl.load(scale_ptr + rn[:, None] * stride_sn + plane[None, :],
                            mask=(rn[:, None] < N) & k_ok[None, :], other=0.0).to(tl.float32)
            w = (bit.to(tl.float32) * 2.0 - 1.0) * scale
            if IEEE:
                acc += tl.dot(a, tl.trans(w), input_precision="ieee")
            else:
                acc += tl.dot(a.to(tl.float16), tl.trans(w).to(tl.float16))
        tl.store(out_ptr + rm[:, None] * stride_om + rn[None, :], acc, mask=(rm[:, None] < M) & (rn[None, :] < N))

    return packed_matmul_kernel


def packed_matmul(scaled: torch.Tensor, packed: torch.Tensor, row_scale: torch.Tensor, plane_index: torch.Tensor
                  ) -> torch.Tensor:
    """(M, P) α_c-scaled inputs × packed (N, ⌈P/8⌉) signs with per-plane row scales (N, planes) → (M, N) fp32.

    fp32 inputs accumulate in IEEE fp32 (matches the torch path to rounding); fp16/bf16 inputs use tensor cores."""
    import triton  # optional dependency: callers check triton_available() first

    scaled = scaled.contiguous()
    packed = packed.contiguous()
    row_scale = row_scale.contiguous()
    plane = plane_index.to(torch.int32).contiguous()
    m, p = scaled.shape
    n = packed.shape[0]
    out = torch.empty(m, n, device=scaled.device, dtype=torch.float32)
    block_m = 16 if m <= 16 else 64
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, 64))
    _kernel()[grid](scaled, packed, row_scale, plane, out, m, n, p, row_scale.shape[1],
                    scaled.stride(0), packed.stride(0), row_scale.stride(0), out.stride(0),
                    BLOCK_M=block_m, BLOCK_N=64, BLOCK_K=64, IEEE=scaled.dtype == torch.float32)
    return out


__all__ = ["packed_matmul", "triton_available"]
