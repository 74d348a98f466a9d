// CPU kernels for QuantDLLMLinear (Quant-dLLM, arXiv:2510.03274): y = Σ_{g,k} α_r,g,k ⊙ (B_{g,k} (α_c,g,k ⊙ x_g))
// evaluated straight from the packed sign planes, never building the dense weight.
//
// * lut16_matmul — few tokens, planes on 32-column boundaries, AVX-512: 16-entry tables of the signed partial sums
//   of 4 columns, looked up for 16 rows at once with one register permute (T-MAC, arXiv:2407.00088). See lut16_tile.
// * lut_matmul — few tokens, any layout. A lookup table in the style of T-MAC (arXiv:2407.00088): for every
//   byte j of the packed planes (8 plane columns) and every token, T[j][v] = Σ_{i : bit i of v} xs[8j + i] with xs = α_c ⊙ x
//   gathered per plane column (all 256 subset sums, built with one add each). Because a sign is 2·bit − 1,
//   Σ_c B_rc xs_c over a plane p = 2 Σ_j T[j][W_rj & mask] − S_p with S_p = Σ_{c∈p} xs_c; the mask keeps the bits
//   of a byte that belong to p (a byte may straddle two planes when a block width is not a multiple of 8).
//   Cost per token: one table read per stored weight byte; the table (tokens × bytes × 256 floats) is the only
//   temporary.
// * amx_matmul — float32 inputs at 16–159 tokens on CPUs with AMX-BF16 (planes on 32-column boundaries): tile
//   products of the sign bits (exact in bf16) with exact bf16 pieces of α_c ⊙ x and α_r. See its section below.
// * tile_matmul — many tokens. Dequantizes `tile_rows` output rows at a time into a small dense tile
//   (Σ_k α_r α_cᵀ ⊙ B_k, the weight of those rows only) and multiplies it with a BLAS GEMM; the tile is reused for
//   every tile, so the transient memory is tile_rows × in_features values, never the whole weight.
//
// * sign_search — DAQ's update_B for the quantizer (bottom of the file).
//
// `meta` is an int64 (planes, 3) tensor: for plane p, its first packed column, its number of columns and the
// first input column it reads (a plane of block g reads input columns [start_g, start_g + |g|)).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <type_traits>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

struct Run {  // bytes [begin, end) of one plane inside one chunk; first/last byte masked to the plane's bits
  int64_t plane;
  int64_t begin;
  int64_t end;
  uint8_t first_mask;
  uint8_t last_mask;
};

struct Layout {
  int64_t planes = 0;
  int64_t packed_width = 0;
  std::vector<int64_t> p_start, p_len, p_in;
  std::vector<int32_t> input_index;  // per plane column: the input column it reads
};

Layout read_layout(const at::Tensor& meta, int64_t in_features, bool with_index = true) {
  TORCH_CHECK(meta.dtype() == at::kLong && meta.dim() == 2 && meta.size(1) == 3, "meta must be int64 (planes, 3)");
  auto m = meta.contiguous();
  const int64_t* d = m.data_ptr<int64_t>();
  Layout out;
  out.planes = m.size(0);
  int64_t cursor = 0;
  for (int64_t p = 0; p < out.planes; ++p) {
    const int64_t start = d[3 * p], len = d[3 * p + 1], in = d[3 * p + 2];
    TORCH_CHECK(start == cursor && len > 0 && in >= 0 && in + len <= in_features, "inconsistent plane layout");
    out.p_start.push_back(start);
    out.p_len.push_back(len);
    out.p_in.push_back(in);
    cursor += len;
  }
  out.packed_width = cursor;
  if (!with_index) return out;  // the AMX kernel reads whole planes and needs no per-column index
  out.input_index.resize(cursor);
  for (int64_t p = 0; p < out.planes; ++p)
    for (int64_t c = 0; c < out.p_len[p]; ++c) out.input_index[out.p_start[p] + c] = int32_t(out.p_in[p] + c);
  return out;
}

uint8_t bit_mask(int64_t lo, int64_t hi) {  // bits [lo, hi) of a byte, 0 ≤ lo < hi ≤ 8
  return uint8_t(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

// Runs of each chunk of `chunk_bytes` bytes, in byte order.
std::vector<std::vector<Run>> chunk_runs(const Layout& layout, int64_t nbytes, int64_t chunk_bytes) {
  const int64_t chunks = (nbytes + chunk_bytes - 1) / chunk_bytes;
  std::vector<std::vector<Run>> out(chunks);
  for (int64_t p = 0; p < layout.planes; ++p) {
    const int64_t c0 = layout.p_start[p], c1 = c0 + layout.p_len[p];
    const int64_t b0 = c0 / 8, b1 = (c1 + 7) / 8;
    for (int64_t k = b0 / chunk_bytes; k * chunk_bytes < b1; ++k) {
      const int64_t jb = std::max(b0, k * chunk_bytes), je = std::min(b1, (k + 1) * chunk_bytes);
      Run run{p, jb, je, 0xFF, 0xFF};
      if (jb == b0) run.first_mask = bit_mask(c0 - 8 * b0, std::min<int64_t>(8, c1 - 8 * b0));
      if (je == b1) run.last_mask = bit_mask(std::max<int64_t>(0, c0 - 8 * (b1 - 1)), c1 - 8 * (b1 - 1));
      out[k].push_back(run);
    }
  }
  return out;
}

template <int MT>
void build_table(float* table, const float* x, int64_t ld_x, int64_t tokens, const float* col_scale,
                 const Layout& layout, int64_t nbytes) {
  at::parallel_for(0, nbytes, 16, [&](int64_t jb, int64_t je) {
    for (int64_t j = jb; j < je; ++j) {
      float xs[8][MT];
      for (int i = 0; i < 8; ++i) {
        const int64_t c = 8 * j + i;
        for (int t = 0; t < MT; ++t)
          xs[i][t] = (c < layout.packed_width && t < tokens) ? x[t * ld_x + layout.input_index[c]] * col_scale[c] : 0.f;
      }
      float* tj = table + j * 256 * MT;
      for (int t = 0; t < MT; ++t) tj[t] = 0.f;
      for (int v = 1; v < 256; ++v) {
        const int low = __builtin_ctz(v);
        const float* prev = tj + (v & (v - 1)) * MT;
        float* cur = tj + v * MT;
        for (int t = 0; t < MT; ++t) cur[t] = prev[t] + xs[low][t];
      }
    }
  });
}

template <int MT>
inline void sum_run(const float* __restrict table, const uint8_t* __restrict w, const Run& run,
                    float* __restrict s) {
  // Σ_j T[j][w_j] over the run's bytes; the first and last byte keep only the plane's bits. Partial sums live in
  // locals (registers), written to `s` once.
  float acc[MT];
  const int64_t last = run.end - 1;
  {
    const int64_t j = run.begin;
    const float* e = table + (j * 256 + (w[j] & run.first_mask & (j == last ? run.last_mask : 0xFF))) * MT;
    for (int t = 0; t < MT; ++t) acc[t] = e[t];
  }
  int64_t j = run.begin + 1;
  if (j <= last) {
    if (MT == 1) {
      float a1 = 0.f, a2 = 0.f, a3 = 0.f;  // independent chains hide the add latency
      for (; j + 4 <= last; j += 4) {
        acc[0] += table[(j + 0) * 256 + w[j + 0]];
        a1 += table[(j + 1) * 256 + w[j + 1]];
        a2 += table[(j + 2) * 256 + w[j + 2]];
        a3 += table[(j + 3) * 256 + w[j + 3]];
      }
      for (; j < last; ++j) acc[0] += table[j * 256 + w[j]];
      acc[0] += (a1 + a2) + a3;
    } else {
      for (; j < last; ++j) {
        const float* e = table + (j * 256 + w[j]) * MT;
        for (int t = 0; t < MT; ++t) acc[t] += e[t];
      }
    }
    const float* e = table + (last * 256 + (w[last] & run.last_mask)) * MT;
    for (int t = 0; t < MT; ++t) acc[t] += e[t];
  }
  for (int t = 0; t < MT; ++t) s[t] = acc[t];
}

template <int MT>
void lut_tile(const float* x, int64_t ld_x, int64_t tokens, const uint8_t* packed, int64_t nbytes,
              const at::Half* row_scale, int64_t planes, const float* col_scale, const Layout& layout,
              const std::vector<std::vector<Run>>& runs, int64_t chunk_bytes, float* table, float* out,
              int64_t out_features) {
  build_table<MT>(table, x, ld_x, tokens, col_scale, layout, nbytes);
  // S_p per token: Σ_{c∈p} xs_c = T[j][0xFF] summed over the plane's bytes, masked at its ends
  std::vector<float> plane_sum(planes * MT, 0.f);
  const std::vector<std::vector<Run>> whole = chunk_runs(layout, nbytes, nbytes);
  std::vector<uint8_t> ones(nbytes, 0xFF);
  for (const Run& run : whole[0]) sum_run<MT>(table, ones.data(), run, plane_sum.data() + run.plane * MT);
  constexpr int64_t RB = 32;  // rows per inner block: their partial sums stay in L1 while a chunk is swept
  at::parallel_for(0, out_features, RB, [&](int64_t rb, int64_t re) {
    for (int64_t r0 = rb; r0 < re; r0 += RB) {
      const int64_t r1 = std::min(re, r0 + RB);
      float acc[RB][MT];
      for (int64_t r = r0; r < r1; ++r)
        for (int t = 0; t < MT; ++t) acc[r - r0][t] = 0.f;
      for (const auto& chunk : runs) {
        for (int64_t r = r0; r < r1; ++r) {
          const uint8_t* w = packed + r * nbytes;
          const at::Half* rs = row_scale + r * planes;
          for (const Run& run : chunk) {
            float s[MT];
            sum_run<MT>(table, w, run, s);
            const float a = 2.f * static_cast<float>(rs[run.plane]);
            for (int t = 0; t < MT; ++t) acc[r - r0][t] += a * s[t];
          }
        }
      }
      for (int64_t r = r0; r < r1; ++r) {
        const at::Half* rs = row_scale + r * planes;
        for (int t = 0; t < MT; ++t) {
          float bias = 0.f;
          for (int64_t p = 0; p < planes; ++p) bias += static_cast<float>(rs[p]) * plane_sum[p * MT + t];
          if (t < tokens) out[t * out_features + r] = acc[r - r0][t] - bias;
        }
      }
    }
  });
}

}  // namespace

// x: (M, in) float32 contiguous; packed: (n, nbytes) uint8; row_scale: (n, planes) fp16; col_scale: (P,) fp32.
at::Tensor lut_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& row_scale,
                      const at::Tensor& col_scale, const at::Tensor& meta, int64_t token_tile, int64_t chunk_bytes) {
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2 && x.is_contiguous(), "x must be contiguous float32 (M, in)");
  TORCH_CHECK(packed.dtype() == at::kByte && packed.is_contiguous(), "packed must be contiguous uint8");
  TORCH_CHECK(row_scale.dtype() == at::kHalf && row_scale.is_contiguous(), "row_scale must be contiguous float16");
  TORCH_CHECK(col_scale.dtype() == at::kFloat && col_scale.is_contiguous(), "col_scale must be contiguous float32");
  TORCH_CHECK(token_tile == 1 || token_tile == 2 || token_tile == 4 || token_tile == 8, "token_tile in {1,2,4,8}");
  TORCH_CHECK(chunk_bytes > 0, "chunk_bytes must be > 0");
  const int64_t tokens = x.size(0), in_features = x.size(1), n = packed.size(0), nbytes = packed.size(1);
  const Layout layout = read_layout(meta, in_features);
  TORCH_CHECK((layout.packed_width + 7) / 8 == nbytes && col_scale.numel() == layout.packed_width &&
                  row_scale.size(0) == n && row_scale.size(1) == layout.planes,
              "packed tensors do not match the plane layout");
  auto out = at::empty({tokens, n}, x.options());
  if (tokens == 0 || n == 0) return out;
  const auto runs = chunk_runs(layout, nbytes, chunk_bytes);
  const int64_t tile = std::min<int64_t>(token_tile, tokens) <= 1 ? 1
                       : std::min<int64_t>(token_tile, tokens) <= 2 ? 2
                       : std::min<int64_t>(token_tile, tokens) <= 4 ? 4 : 8;
  auto table = at::empty({nbytes * 256 * tile}, x.options());  // the only temporary: tile × bytes × 256 floats
  for (int64_t t0 = 0; t0 < tokens; t0 += tile) {
    const int64_t count = std::min(tile, tokens - t0);
    const float* xp = x.data_ptr<float>() + t0 * in_features;
    float* op = out.data_ptr<float>() + t0 * n;
    switch (tile) {
      case 1: lut_tile<1>(xp, in_features, count, packed.data_ptr<uint8_t>(), nbytes, row_scale.data_ptr<at::Half>(),
                          layout.planes, col_scale.data_ptr<float>(), layout, runs, chunk_bytes,
                          table.data_ptr<float>(), op, n); break;
      case 2: lut_tile<2>(xp, in_features, count, packed.data_ptr<uint8_t>(), nbytes, row_scale.data_ptr<at::Half>(),
                          layout.planes, col_scale.data_ptr<float>(), layout, runs, chunk_bytes,
                          table.data_ptr<float>(), op, n); break;
      case 4: lut_tile<4>(xp, in_features, count, packed.data_ptr<uint8_t>(), nbytes, row_scale.data_ptr<at::Half>(),
                          layout.planes, col_scale.data_ptr<float>(), layout, runs, chunk_bytes,
                          table.data_ptr<float>(), op, n); break;
      default: lut_tile<8>(xp, in_features, count, packed.data_ptr<uint8_t>(), nbytes, row_scale.data_ptr<at::Half>(),
                           layout.planes, col_scale.data_ptr<float>(), layout, runs, chunk_bytes,
                           table.data_ptr<float>(), op, n); break;
    }
  }
  return out;
}

#if defined(__AVX512F__)
namespace {

// Nibble lookup tables held in registers (T-MAC, arXiv:2407.00088, §3): for every 4 plane columns q and token t,
// T[t][q][v] = Σ_i (bit i of v ? +xs : −xs)[4q + i] — the 16 possible signed partial sums. One vpermps looks up
// 16 rows at once (their 16 nibbles form the index vector), so a group of 16 rows × 4 columns costs one permute
// and one add per token, and no dense weight is ever formed. Needs every plane to start and end on a 32-column
// boundary (one 32-bit word of bits per row); the byte-table kernel handles every other layout.
template <int TT>
void lut16_tile(const float* x, int64_t ld_x, int64_t tokens, const uint8_t* packed, int64_t nbytes,
                const at::Half* row_scale, const float* col_scale, const Layout& layout, float* table, float* out,
                int64_t n) {
  const int64_t groups = layout.packed_width / 4;
  at::parallel_for(0, groups, 64, [&](int64_t qb, int64_t qe) {
    for (int64_t q = qb; q < qe; ++q)
      for (int t = 0; t < TT; ++t) {
        float xs[4];
        for (int i = 0; i < 4; ++i) {
          const int64_t c = 4 * q + i;
          xs[i] = t < tokens ? x[t * ld_x + layout.input_index[c]] * col_scale[c] : 0.f;
        }
        float* e = table + (int64_t(t) * groups + q) * 16;
        for (int v = 0; v < 16; ++v)
          e[v] = ((v & 1) ? xs[0] : -xs[0]) + ((v & 2) ? xs[1] : -xs[1]) + ((v & 4) ? xs[2] : -xs[2]) +
                 ((v & 8) ? xs[3] : -xs[3]);
      }
  });
  const int64_t row_groups = (n + 15) / 16;
  const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                           _mm512_set1_epi32(int32_t(nbytes)));
  const __m512i nibble = _mm512_set1_epi32(15);
  at::parallel_for(0, row_groups, 4, [&](int64_t gb, int64_t ge) {
    for (int64_t g = gb; g < ge; ++g) {
      const int64_t r0 = 16 * g;
      const int64_t live = std::min<int64_t>(16, n - r0);
      const __mmask16 rows = live == 16 ? __mmask16(0xFFFF) : __mmask16((1u << live) - 1u);
      const uint8_t* base = packed + r0 * nbytes;
      __m512 y[TT];
      for (int t = 0; t < TT; ++t) y[t] = _mm512_setzero_ps();
      for (int64_t p = 0; p < layout.planes; ++p) {
        __m512 acc[TT];
        for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
        const int64_t c0 = layout.p_start[p], c1 = c0 + layout.p_len[p];
        for (int64_t c = c0; c < c1; c += 32) {
          // bits c … c+31 of the 16 rows: one 32-bit word per row
          const __m512i word = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, lanes, base + c / 8, 1);
          const int64_t q0 = c / 4;
          for (int k = 0; k < 8; ++k) {
            const __m512i idx = _mm512_and_si512(_mm512_srli_epi32(word, 4 * k), nibble);
            for (int t = 0; t < TT; ++t) {
              const __m512 lut = _mm512_loadu_ps(table + (int64_t(t) * groups + q0 + k) * 16);
              acc[t] = _mm512_add_ps(acc[t], _mm512_permutexvar_ps(idx, lut));
            }
          }
        }
        float scale[16];
        for (int i = 0; i < 16; ++i)
          scale[i] = i < live ? static_cast<float>(row_scale[(r0 + i) * layout.planes + p]) : 0.f;
        const __m512 a = _mm512_loadu_ps(scale);
        for (int t = 0; t < TT; ++t) y[t] = _mm512_fmadd_ps(a, acc[t], y[t]);
      }
      for (int t = 0; t < TT && t < tokens; ++t) _mm512_mask_storeu_ps(out + t * n + r0, rows, y[t]);
    }
  });
}

}  // namespace
#endif

bool lut16_available() {
#if defined(__AVX512F__)
  return true;
#else
  return false;
#endif
}

// The register-table kernel (see lut16_tile); x: (M, in) float32 contiguous. Refused when the layout is not
// 32-column aligned or the build has no AVX-512.
at::Tensor lut16_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& row_scale,
                        const at::Tensor& col_scale, const at::Tensor& meta, int64_t token_tile) {
  TORCH_CHECK(lut16_available(), "lut16_matmul needs a build with AVX-512");
  TORCH_CHECK(x.dtype() == at::kFloat && x.dim() == 2 && x.is_contiguous(), "x must be contiguous float32 (M, in)");
  TORCH_CHECK(packed.dtype() == at::kByte && packed.is_contiguous(), "packed must be contiguous uint8");
  TORCH_CHECK(row_scale.dtype() == at::kHalf && row_scale.is_contiguous(), "row_scale must be contiguous float16");
  TORCH_CHECK(col_scale.dtype() == at::kFloat && col_scale.is_contiguous(), "col_scale must be contiguous float32");
  TORCH_CHECK(token_tile == 1 || token_tile == 2 || token_tile == 4 || token_tile == 8, "token_tile in {1,2,4,8}");
  const int64_t tokens = x.size(0), in_features = x.size(1), n = packed.size(0), nbytes = packed.size(1);
  const Layout layout = read_layout(meta, in_features);
  TORCH_CHECK((layout.packed_width + 7) / 8 == nbytes && col_scale.numel() == layout.packed_width &&
                  row_scale.size(0) == n && row_scale.size(1) == layout.planes,
              "packed tensors do not match the plane layout");
  for (int64_t p = 0; p < layout.planes; ++p)
    TORCH_CHECK(layout.p_start[p] % 32 == 0 && layout.p_len[p] % 32 == 0, "lut16_matmul needs 32-column planes");
  TORCH_CHECK(16 * nbytes < (int64_t(1) << 31), "rows too wide for 32-bit gather offsets");
  auto out = at::empty({tokens, n}, x.options());
  if (tokens == 0 || n == 0) return out;
#if defined(__AVX512F__)
  const int64_t tile = std::min<int64_t>(token_tile, tokens);
  const int64_t width = tile <= 1 ? 1 : tile <= 2 ? 2 : tile <= 4 ? 4 : 8;
  auto table = at::empty({width * (layout.packed_width / 4) * 16}, x.options());  // the only temporary
  for (int64_t t0 = 0; t0 < tokens; t0 += width) {
    const int64_t count = std::min(width, tokens - t0);
    const float* xp = x.data_ptr<float>() + t0 * in_features;
    float* op = out.data_ptr<float>() + t0 * n;
    const int64_t tt = count <= 1 ? 1 : count <= 2 ? 2 : count <= 4 ? 4 : 8;
#define HF_DLM_LUT16(T) lut16_tile<T>(xp, in_features, count, packed.data_ptr<uint8_t>(), nbytes, \
    row_scale.data_ptr<at::Half>(), col_scale.data_ptr<float>(), layout, table.data_ptr<float>(), op, n)
    switch (tt) {
      case 1: HF_DLM_LUT16(1); break;
      case 2: HF_DLM_LUT16(2); break;
      case 4: HF_DLM_LUT16(4); break;
      default: HF_DLM_LUT16(8); break;
    }
#undef HF_DLM_LUT16
  }
#endif
  return out;
}

namespace {

inline float sign_of(const uint8_t* w, int64_t c) { return ((w[c >> 3] >> (c & 7)) & 1) ? 1.f : -1.f; }

#if defined(__AVX512F__)
inline void store16(float* out, __m512 v) { _mm512_storeu_ps(out, v); }
inline void store16(at::BFloat16* out, __m512 v) {
#if defined(__AVX512BF16__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), (__m256i)_mm512_cvtneps_pbh(v));  // round to nearest even
#else
  alignas(64) float tmp[16];
  _mm512_storeu_ps(tmp, v);
  for (int i = 0; i < 16; ++i) out[i] = static_cast<at::BFloat16>(tmp[i]);
#endif
}
#endif

template <typename T>
void dequant_rows(T* tile, int64_t r0, int64_t r1, const uint8_t* packed, int64_t nbytes, const at::Half* row_scale,
                  const float* col_scale, const Layout& layout, int64_t in_features) {
  // Ŵ[r, block g] = Σ_k α_r[r, (g,k)] · α_c[(g,k)] ⊙ B[r, (g,k)]: per block, the K planes are summed in registers
  // (in plane order, from 0) and each weight is written once.
  struct Block { int64_t first, last, in, len; bool byte_aligned; };
  std::vector<Block> blocks;
  for (int64_t p = 0; p < layout.planes; ++p) {
    if (blocks.empty() || blocks.back().in != layout.p_in[p])
      blocks.push_back({p, p, layout.p_in[p], layout.p_len[p], true});
    blocks.back().last = p;
    blocks.back().byte_aligned = blocks.back().byte_aligned && layout.p_start[p] % 8 == 0;
  }
  at::parallel_for(r0, r1, 8, [&](int64_t rb, int64_t re) {
    std::vector<float> scale(layout.planes);
    for (int64_t r = rb; r < re; ++r) {
      const uint8_t* w = packed + r * nbytes;
      for (int64_t p = 0; p < layout.planes; ++p) scale[p] = static_cast<float>(row_scale[r * layout.planes + p]);
      T* out = tile + (r - r0) * in_features;
      for (const Block& block : blocks) {
        T* dst = out + block.in;
        int64_t j = 0;
#if defined(__AVX512F__)
        if (block.byte_aligned) {
          const __m512 zero = _mm512_setzero_ps();
          for (; j + 16 <= block.len; j += 16) {
            __m512 acc = zero;
            for (int64_t p = block.first; p <= block.last; ++p) {
              const int64_t c = layout.p_start[p] + j;
              uint16_t bits;
              std::memcpy(&bits, w + (c >> 3), sizeof(bits));  // little-endian: bit i is column c + i
              const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(col_scale + c), _mm512_set1_ps(scale[p]));
              const __m512 signed_v = _mm512_mask_blend_ps(static_cast<__mmask16>(bits), _mm512_sub_ps(zero, v), v);
              acc = _mm512_add_ps(acc, signed_v);
            }
            store16(dst + j, acc);
          }
        }
#endif
        for (; j < block.len; ++j) {
          float acc = 0.f;
          for (int64_t p = block.first; p <= block.last; ++p) {
            const int64_t c = layout.p_start[p] + j;
            acc += scale[p] * col_scale[c] * sign_of(w, c);
          }
          dst[j] = static_cast<T>(acc);
        }
      }
    }
  });
}

}  // namespace

// x: (M, in) float32 or bfloat16 contiguous → (M, n) of x's dtype, via dense tiles of `tile_rows` rows.
at::Tensor tile_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& row_scale,
                       const at::Tensor& col_scale, const at::Tensor& meta, int64_t tile_rows) {
  TORCH_CHECK((x.dtype() == at::kFloat || x.dtype() == at::kBFloat16) && x.dim() == 2 && x.is_contiguous(),
              "x must be contiguous float32 or bfloat16 (M, in)");
  TORCH_CHECK(packed.dtype() == at::kByte && packed.is_contiguous(), "packed must be contiguous uint8");
  TORCH_CHECK(row_scale.dtype() == at::kHalf && row_scale.is_contiguous(), "row_scale must be contiguous float16");
  TORCH_CHECK(col_scale.dtype() == at::kFloat && col_scale.is_contiguous(), "col_scale must be contiguous float32");
  TORCH_CHECK(tile_rows > 0, "tile_rows must be > 0");
  const int64_t tokens = x.size(0), in_features = x.size(1), n = packed.size(0), nbytes = packed.size(1);
  const Layout layout = read_layout(meta, in_features);
  TORCH_CHECK((layout.packed_width + 7) / 8 == nbytes && col_scale.numel() == layout.packed_width &&
                  row_scale.size(0) == n && row_scale.size(1) == layout.planes,
              "packed tensors do not match the plane layout");
  auto out = at::empty({tokens, n}, x.options());
  if (tokens == 0 || n == 0) return out;
  const int64_t rows = std::min(tile_rows, n);
  auto tile = at::empty({rows, in_features}, x.options());
  for (int64_t r0 = 0; r0 < n; r0 += rows) {
    const int64_t r1 = std::min(n, r0 + rows);
    auto part = tile.narrow(0, 0, r1 - r0);
    if (x.dtype() == at::kFloat)
      dequant_rows<float>(part.data_ptr<float>(), r0, r1, packed.data_ptr<uint8_t>(), nbytes,
                          row_scale.data_ptr<at::Half>(), col_scale.data_ptr<float>(), layout, in_features);
    else
      dequant_rows<at::BFloat16>(part.data_ptr<at::BFloat16>(), r0, r1, packed.data_ptr<uint8_t>(), nbytes,
                                 row_scale.data_ptr<at::Half>(), col_scale.data_ptr<float>(), layout, in_features);
    auto slice = out.narrow(1, r0, r1 - r0);
    at::mm_out(slice, x, part.t());
  }
  return out;
}

// ----------------------------------------------------------------------------------------------------------
// amx_matmul — planes on 32-column boundaries, a CPU with AMX-BF16 (Sapphire Rapids and later): the sum
// y = Σ_p α_r,p ⊙ (B_p (α_c,p ⊙ x)) on the tile unit, exactly to fp32 rounding, never forming the dense weight.
// The signs are exact in bf16; the scales are not, so both factors are split into bf16 pieces whose sums are exact:
//   xs = α_c ⊙ x (fp32) = h + m + l   (three truncations: 8 + 8 + 8 significand bits),
//   α_r (fp16, 11 bits) = a + b        (a: the top 8 bits, b: the remaining 3).
// The weight operand of a 32-column step of 16 output rows is (a ⊙ B) or (b ⊙ B), built in registers from one
// 32-bit word of bits per row; the products a·h, a·m, a·l, b·h, b·m are summed by TDPBF16PS in fp32 (b·l is
// < 2⁻²¹ of a product and is left out: adding it changed no output measurably against float64). The error is the
// tile unit's own fp32 accumulation: ≈ 1·10⁻⁶ of the output's scale at 4,096 inputs against float64, where the
// fp32 GEMM has 4·10⁻⁷. Per 32 plane columns and 16 × 16 outputs: five tile products (≈ 80 cycles) against
// 16 × 16 × 32 fp32 FMAs (≈ 256 cycles) for the dense layer; at the sizes measured the tile loads, not the
// products, bound it.
// The only temporaries: the bf16 pieces of xs for a chunk of `chunk_tokens` tokens (3 × chunk × P bf16) and a
// few 1 KB tiles per thread.
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512F__)
#include <sys/syscall.h>
#include <unistd.h>
namespace {

struct TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

bool amx_permitted() {  // Linux hands out the tile state on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
  static const bool ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return ok;
}

inline void amx_configure() {
  TileConfig config{};
  config.palette_id = 1;
  for (int i = 0; i < 8; ++i) {
    config.colsb[i] = 64;
    config.rows[i] = 16;
  }
  _tile_loadconfig(&config);
}

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const at::BFloat16* p) {  // bf16 → fp32: the 16 bits become the top half
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

inline __m512i bf16_trunc_bits(__m512 v) {  // the top 16 bits of each fp32 lane, as fp32 (low half zero)
  return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(int32_t(0xFFFF0000u)));
}

// xs pieces of tokens [t0, t0 + count) as contiguous 1 KB tiles (16 tokens × 32 plane columns, bf16 bits):
// column step q, piece s, token tile j at split + ((q · 3 + s) · rows/16 + j) · 512 (a step's tiles side by side,
// read in order); tokens from `count` to `rows` (a multiple of 16) are zero.
template <typename T>
void split_inputs(const T* x, int64_t ld_x, int64_t t0, int64_t count, int64_t rows, const float* col_scale,
                  const Layout& layout, uint16_t* split) {
  const int64_t P = layout.packed_width, steps = P / 32, tiles = rows / 16;
  at::parallel_for(0, rows, 4, [&](int64_t rb, int64_t re) {
    for (int64_t t = rb; t < re; ++t) {
      const int64_t j = t / 16, row = t % 16;
      uint16_t* pieces[3];
      for (int s = 0; s < 3; ++s) pieces[s] = split + (s * tiles + j) * 512 + row * 32;
      const int64_t step_stride = 3 * tiles * 512;
      if (t >= count) {
        for (int s = 0; s < 3; ++s)
          for (int64_t q = 0; q < steps; ++q) std::memset(pieces[s] + q * step_stride, 0, 64);
        continue;
      }
      const T* xt = x + (t0 + t) * ld_x;
      for (int64_t p = 0; p < layout.planes; ++p) {
        for (int64_t c = 0; c < layout.p_len[p]; c += 16) {
          const int64_t col = layout.p_start[p] + c;
          const int64_t at = (col / 32) * step_stride + col % 32;
          const __m512 v = _mm512_mul_ps(load16(xt + layout.p_in[p] + c), _mm512_loadu_ps(col_scale + col));
          const __m512i hb = bf16_trunc_bits(v);
          const __m512 r = _mm512_sub_ps(v, _mm512_castsi512_ps(hb));        // exact
          const __m512i mb = bf16_trunc_bits(r);
          const __m512 s = _mm512_sub_ps(r, _mm512_castsi512_ps(mb));        // exact, ≤ 8 significant bits
          const __m512i lb = bf16_trunc_bits(s);                             // exact
          const __m512i bits[3] = {hb, mb, lb};
          for (int k = 0; k < 3; ++k)  // the top halves, narrowed to 16 bits
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(pieces[k] + at),
                                _mm512_cvtepi32_epi16(_mm512_srli_epi32(bits[k], 16)));
        }
      }
    }
  });
}

template <typename T>
void amx_rows(const uint16_t* split, int64_t rows, int64_t t0, int64_t count, const uint8_t* packed,
              int64_t nbytes, const at::Half* row_scale, const Layout& layout, T* out, int64_t n) {
  const int64_t P = layout.packed_width;
  const int64_t steps = P / 32;
  std::vector<int64_t> step_plane(steps);
  for (int64_t p = 0; p < layout.planes; ++p)
    for (int64_t c = 0; c < layout.p_len[p]; c += 32) step_plane[(layout.p_start[p] + c) / 32] = p;
  const int64_t row_tiles = (n + 15) / 16;
  const int64_t token_tiles = rows / 16;
  at::parallel_for(0, row_tiles, 1, [&](int64_t gb, int64_t ge) {
    amx_configure();
    alignas(64) uint32_t wa[2][256];  // VNNI weight tiles (a ⊙ B, b ⊙ B): 16 rows of 16 columns × 2 bf16, two
    alignas(64) uint32_t wb[2][256];  // column steps in flight
    alignas(64) float cbuf[256];
    std::vector<uint32_t> scale_a(layout.planes * 16), scale_b(layout.planes * 16);
    const __m512i lanes = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(int32_t(nbytes)));
    const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2);
    for (int64_t g = gb; g < ge; ++g) {
      const int64_t r0 = 16 * g;
      const int64_t live = std::min<int64_t>(16, n - r0);
      const __mmask16 live_rows = live == 16 ? __mmask16(0xFFFF) : __mmask16((1u << live) - 1u);
      // α_r = a + b for the 16 rows, each bf16 duplicated in both halves of a 32-bit lane
      for (int64_t p = 0; p < layout.planes; ++p)
        for (int i = 0; i < 16; ++i) {
          const float v = i < live ? static_cast<float>(row_scale[(r0 + i) * layout.planes + p]) : 0.f;
          uint32_t bits;
          std::memcpy(&bits, &v, 4);
          const uint32_t hi = bits & 0xFFFF0000u;
          float hf, lo;
          std::memcpy(&hf, &hi, 4);
          lo = v - hf;
          uint32_t lbits;
          std::memcpy(&lbits, &lo, 4);
          scale_a[p * 16 + i] = (hi >> 16) | hi;
          scale_b[p * 16 + i] = (lbits >> 16) | (lbits & 0xFFFF0000u);
        }
      const uint8_t* base = packed + r0 * nbytes;
      for (int64_t tt0 = 0; tt0 < token_tiles; tt0 += 4) {
        const int64_t nt = std::min<int64_t>(4, token_tiles - tt0);
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        // the weight tiles of step q + 1 are built (vector stores) while the tile unit works on step q: a tile
        // load cannot take data from stores still in flight, so loading right after building would stall
        auto build = [&](int64_t q, uint32_t* wa, uint32_t* wb) {
          const int64_t p = step_plane[q];
          const __m512i words = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live_rows, lanes, base + 4 * q, 1);
          const __m512i sa = _mm512_loadu_si512(scale_a.data() + p * 16);
          const __m512i sb = _mm512_loadu_si512(scale_b.data() + p * 16);
          for (int i = 0; i < 16; ++i) {
            // columns 2i, 2i+1 of each row: a clear bit is −1, i.e. the bf16 sign bit set (15 low, 31 high)
            const __m512i s = _mm512_srli_epi32(words, 2 * i);
            const __m512i neg = _mm512_or_si512(_mm512_slli_epi32(_mm512_andnot_si512(s, one), 15),
                                                _mm512_slli_epi32(_mm512_andnot_si512(s, two), 30));
            _mm512_store_si512(wa + 16 * i, _mm512_xor_si512(sa, neg));
            _mm512_store_si512(wb + 16 * i, _mm512_xor_si512(sb, neg));
          }
        };
        build(0, wa[0], wb[0]);
        for (int64_t q = 0; q < steps; ++q) {
          const int cur = int(q & 1);
          _tile_loadd(4, wa[cur], 64);
          _tile_loadd(5, wb[cur], 64);
          if (q + 1 < steps) build(q + 1, wa[1 - cur], wb[1 - cur]);
          // the three pieces of each token tile against a ⊙ B (tmm4) and b ⊙ B (tmm5); two X registers alternate
          // so that a load does not wait for the products still reading the other
          const uint16_t* xq = split + (q * 3 * token_tiles + tt0) * 512;
          const int64_t piece = token_tiles * 512, tile = 512;
#define HF_DLM_AMX_STEP(J, R, S, A)                                                             \
  if (nt > J) {                                                                                 \
    _tile_loadd(R, xq + S * piece + J * tile, 64);                                              \
    _tile_dpbf16ps(J, R, 4);                                                                    \
    if (A) _tile_dpbf16ps(J, R, 5);                                                             \
  }
          HF_DLM_AMX_STEP(0, 6, 0, 1)
          HF_DLM_AMX_STEP(1, 7, 0, 1)
          HF_DLM_AMX_STEP(2, 6, 0, 1)
          HF_DLM_AMX_STEP(3, 7, 0, 1)
          HF_DLM_AMX_STEP(0, 6, 1, 1)
          HF_DLM_AMX_STEP(1, 7, 1, 1)
          HF_DLM_AMX_STEP(2, 6, 1, 1)
          HF_DLM_AMX_STEP(3, 7, 1, 1)
          HF_DLM_AMX_STEP(0, 6, 2, 0)
          HF_DLM_AMX_STEP(1, 7, 2, 0)
          HF_DLM_AMX_STEP(2, 6, 2, 0)
          HF_DLM_AMX_STEP(3, 7, 2, 0)
#undef HF_DLM_AMX_STEP
        }
#define HF_DLM_AMX_STORE(J)                                                                     \
  if (nt > J) {                                                                                 \
    const int64_t ta = (tt0 + J) * 16;                                                          \
    const int64_t valid = std::min<int64_t>(16, count - ta);                                    \
    if (std::is_same<T, float>::value && valid == 16 && live == 16) {                           \
      _tile_stored(J, reinterpret_cast<float*>(out) + (t0 + ta) * n + r0, n * 4);                \
    } else if (valid > 0) {                                                                     \
      _tile_stored(J, cbuf, 64);                                                                \
      for (int64_t t = 0; t < valid; ++t)                                                       \
        for (int64_t i = 0; i < live; ++i) out[(t0 + ta + t) * n + r0 + i] = static_cast<T>(cbuf[16 * t + i]); \
    }                                                                                           \
  }
        HF_DLM_AMX_STORE(0)
        HF_DLM_AMX_STORE(1)
        HF_DLM_AMX_STORE(2)
        HF_DLM_AMX_STORE(3)
#undef HF_DLM_AMX_STORE
      }
    }
    _tile_release();
  });
}

}  // namespace
#endif

bool amx_available() {
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512F__)
  return amx_permitted();
#else
  return false;
#endif
}

// x: (M, in) float32 or bfloat16 contiguous → (M, n) of x's dtype. Refused when the layout is not 32-column
// aligned or the build / the OS gives no AMX-BF16. `chunk_tokens` (a multiple of 16) bounds the split-input buffer.
at::Tensor amx_matmul(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& row_scale,
                      const at::Tensor& col_scale, const at::Tensor& meta, int64_t chunk_tokens) {
  TORCH_CHECK(amx_available(), "amx_matmul needs a build and an OS with AMX-BF16");
  TORCH_CHECK((x.dtype() == at::kFloat || x.dtype() == at::kBFloat16) && x.dim() == 2 && x.is_contiguous(),
              "x must be contiguous float32 or bfloat16 (M, in)");
  TORCH_CHECK(packed.dtype() == at::kByte && packed.is_contiguous(), "packed must be contiguous uint8");
  TORCH_CHECK(row_scale.dtype() == at::kHalf && row_scale.is_contiguous(), "row_scale must be contiguous float16");
  TORCH_CHECK(col_scale.dtype() == at::kFloat && col_scale.is_contiguous(), "col_scale must be contiguous float32");
  TORCH_CHECK(chunk_tokens > 0 && chunk_tokens % 16 == 0, "chunk_tokens must be a positive multiple of 16");
  const int64_t tokens = x.size(0), in_features = x.size(1), n = packed.size(0), nbytes = packed.size(1);
  const Layout layout = read_layout(meta, in_features, false);
  TORCH_CHECK((layout.packed_width + 7) / 8 == nbytes && col_scale.numel() == layout.packed_width &&
                  row_scale.size(0) == n && row_scale.size(1) == layout.planes,
              "packed tensors do not match the plane layout");
  for (int64_t p = 0; p < layout.planes; ++p)
    TORCH_CHECK(layout.p_start[p] % 32 == 0 && layout.p_len[p] % 32 == 0, "amx_matmul needs 32-column planes");
  TORCH_CHECK(16 * nbytes < (int64_t(1) << 31), "rows too wide for 32-bit gather offsets");
  auto out = at::empty({tokens, n}, x.options());
  if (tokens == 0 || n == 0) return out;
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512F__)
  const int64_t chunk = std::min<int64_t>(chunk_tokens, (tokens + 15) / 16 * 16);
  auto split = at::empty({3 * chunk * layout.packed_width}, x.options().dtype(at::kShort));  // the only large temporary
  uint16_t* sp = reinterpret_cast<uint16_t*>(split.data_ptr<int16_t>());
  for (int64_t t0 = 0; t0 < tokens; t0 += chunk) {
    const int64_t count = std::min(chunk, tokens - t0);
    const int64_t rows = (count + 15) / 16 * 16;
    if (x.dtype() == at::kFloat) {
      split_inputs<float>(x.data_ptr<float>(), in_features, t0, count, rows, col_scale.data_ptr<float>(), layout, sp);
      amx_rows<float>(sp, rows, t0, count, packed.data_ptr<uint8_t>(), nbytes, row_scale.data_ptr<at::Half>(),
                      layout, out.data_ptr<float>(), n);
    } else {
      split_inputs<at::BFloat16>(x.data_ptr<at::BFloat16>(), in_features, t0, count, rows,
                                 col_scale.data_ptr<float>(), layout, sp);
      amx_rows<at::BFloat16>(sp, rows, t0, count, packed.data_ptr<uint8_t>(), nbytes,
                             row_scale.data_ptr<at::Half>(), layout, out.data_ptr<at::BFloat16>(), n);
    }
  }
#endif
  return out;
}

// ----------------------------------------------------------------------------------------------------------
// Quantization helper: ``update_B`` of Quant-dLLM's DAQ (Algorithm 2, ``search``) — for every weight, the sign
// pattern b ∈ {±1}^K (pattern p: b_k = +1 iff bit k of p is set) minimising (W_ij − Σ_k b_k s_k)² with
// s_k = α_r,k,i α_c,k,j, first pattern on ties (argmin's rule). w: (G, n, m), row: (G, K, n), col: (G, K, m), all
// float32 → signs (G, K, n, m) float32 ±1. No (G, 2^K, n, m) candidate tensor is formed. The value of a pattern
// is summed in order k = 0 … K−1 from ±s_0, as the torch fallback in daq.py does, so both round alike.
namespace {

template <int K>
void sign_search_impl(const float* wp, const float* rp, const float* cp, float* op, int64_t G, int64_t n,
                      int64_t m) {
  constexpr int patterns = 1 << K;
  constexpr int64_t J = 64;  // columns per strip: the jj loops compile to SIMD blends
  at::parallel_for(0, G * n, 16, [&](int64_t begin, int64_t end) {
    alignas(64) float s[K][J];
    alignas(64) float best[J];
    alignas(64) float best_p[J];
    for (int64_t gi = begin; gi < end; ++gi) {
      const int64_t g = gi / n, i = gi % n;
      for (int64_t j0 = 0; j0 < m; j0 += J) {
        const int64_t len = std::min(J, m - j0);
        const float* target = wp + gi * m + j0;
        for (int k = 0; k < K; ++k) {
          const float r = rp[(g * K + k) * n + i];
          const float* c = cp + (g * K + k) * m + j0;
          for (int64_t jj = 0; jj < len; ++jj) s[k][jj] = r * c[jj];
        }
        for (int64_t jj = 0; jj < len; ++jj) {
          float v = -s[0][jj];
          for (int k = 1; k < K; ++k) v -= s[k][jj];
          best[jj] = (v - target[jj]) * (v - target[jj]);
          best_p[jj] = 0.f;
        }
        for (int p = 1; p < patterns; ++p) {
          const float fp = float(p);
          for (int64_t jj = 0; jj < len; ++jj) {
            float v = ((p & 1) ? s[0][jj] : -s[0][jj]);
            for (int k = 1; k < K; ++k) v += ((p >> k) & 1) ? s[k][jj] : -s[k][jj];
            const float d = (v - target[jj]) * (v - target[jj]);
            const bool better = d < best[jj];
            best[jj] = better ? d : best[jj];
            best_p[jj] = better ? fp : best_p[jj];
          }
        }
        for (int k = 0; k < K; ++k) {
          float* o = op + ((g * K + k) * n + i) * m + j0;
          for (int64_t jj = 0; jj < len; ++jj) o[jj] = ((int(best_p[jj]) >> k) & 1) ? 1.f : -1.f;
        }
      }
    }
  });
}

}  // namespace

at::Tensor sign_search(const at::Tensor& w, const at::Tensor& row, const at::Tensor& col) {
  TORCH_CHECK(w.dtype() == at::kFloat && row.dtype() == at::kFloat && col.dtype() == at::kFloat,
              "sign_search needs float32 tensors");
  TORCH_CHECK(w.dim() == 3 && row.dim() == 3 && col.dim() == 3, "sign_search: w (G,n,m), row (G,K,n), col (G,K,m)");
  const int64_t G = w.size(0), n = w.size(1), m = w.size(2), K = row.size(1);
  TORCH_CHECK(K >= 1 && K <= 8 && row.size(0) == G && row.size(2) == n && col.size(0) == G && col.size(1) == K &&
                  col.size(2) == m, "sign_search: shapes do not match (K must be 1 … 8)");
  auto wc = w.contiguous(), rc = row.contiguous(), cc = col.contiguous();
  auto out = at::empty({G, K, n, m}, w.options());
  const float* wp = wc.data_ptr<float>();
  const float* rp = rc.data_ptr<float>();
  const float* cp = cc.data_ptr<float>();
  float* op = out.data_ptr<float>();
  switch (K) {
    case 1: sign_search_impl<1>(wp, rp, cp, op, G, n, m); break;
    case 2: sign_search_impl<2>(wp, rp, cp, op, G, n, m); break;
    case 3: sign_search_impl<3>(wp, rp, cp, op, G, n, m); break;
    case 4: sign_search_impl<4>(wp, rp, cp, op, G, n, m); break;
    case 5: sign_search_impl<5>(wp, rp, cp, op, G, n, m); break;
    case 6: sign_search_impl<6>(wp, rp, cp, op, G, n, m); break;
    case 7: sign_search_impl<7>(wp, rp, cp, op, G, n, m); break;
    default: sign_search_impl<8>(wp, rp, cp, op, G, n, m); break;
  }
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("amx_available", &amx_available, "whether amx_matmul can run (AMX-BF16 build and OS permission)");
  m.def("amx_matmul", &amx_matmul, "Quant-dLLM packed linear on AMX tiles, exact bf16 splits (aligned planes)");
  m.def("lut_matmul", &lut_matmul, "Quant-dLLM packed linear, lookup-table kernel (few tokens)");
  m.def("lut16_available", &lut16_available, "whether lut16_matmul was compiled (AVX-512)");
  m.def("lut16_matmul", &lut16_matmul, "Quant-dLLM packed linear, register lookup tables (AVX-512, aligned planes)");
  m.def("sign_search", &sign_search, "Quant-dLLM DAQ update_B: exhaustive sign-pattern search, float32");
  m.def("tile_matmul", &tile_matmul, "Quant-dLLM packed linear, tile dequantize + GEMM (many tokens)");
}
