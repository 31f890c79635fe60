// AVX2 + FMA + F16C LoRA kernels (lora.h); compiled with -mavx2 -mfma -mf16c, called only on
// machines that have them. Rows go in blocks (2 for the shrink, up to 4 for the expand): each F16
// weight vector is loaded and converted once per block, and 8 independent FMA chains keep the FMA
// units busy.

#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/lora.h"

namespace tern::kernels {
namespace {

inline __m256 load_half8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

inline float horizontal_sum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Shrink: N rows (1 or 2), 4 vectors of 8 per row per iteration. A row's sums must not depend on how
// many rows share its block (a request gives the same tokens alone or in any batch), so C is the same
// for every N: 4 partial sums per row, added in one order.
template <int N, int C = 4>
void shrink_block(const LoraWeights& w, const float* x, int64_t x_stride, float* shrunk) {
  constexpr int64_t kStep = 8 * C;
  for (int64_t r = 0; r < w.rank; ++r) {
    const uint16_t* a = w.a + r * w.in;
    __m256 acc[N][C];
    for (int j = 0; j < N; ++j) {
      for (int c = 0; c < C; ++c) acc[j][c] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + kStep <= w.in; i += kStep) {
      for (int c = 0; c < C; ++c) {
        const __m256 wv = load_half8(a + i + 8 * c);
        for (int j = 0; j < N; ++j) acc[j][c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * x_stride + i + 8 * c), acc[j][c]);
      }
    }
    for (; i + 8 <= w.in; i += 8) {
      const __m256 wv = load_half8(a + i);
      for (int j = 0; j < N; ++j) acc[j][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * x_stride + i), acc[j][0]);
    }
    for (int j = 0; j < N; ++j) {
      __m256 total = acc[j][0];
      for (int c = 1; c < C; ++c) total = _mm256_add_ps(total, acc[j][c]);
      float sum = horizontal_sum(total);
      for (int64_t t = i; t < w.in; ++t) sum += x[j * x_stride + t] * _cvtsh_ss(a[t]);
      shrunk[j * w.rank + r] = w.scale * sum;
    }
  }
}

// Expand: N rows (up to 4), C vectors of 8 outputs per iteration: N * C independent FMA chains, more
// outputs per iteration for fewer rows. Each output's sum runs over r in order whatever C is, so the
// result does not depend on N either.
template <int N, int C = (N <= 2 ? 8 / N : 2)>
void expand_block(const LoraWeights& w, const float* shrunk, float* y, int64_t y_stride) {
  constexpr int64_t kStep = 8 * C;
  int64_t o = 0;
  auto chunk = [&]<int K>(std::integral_constant<int, K>) {  // K vectors of 8 outputs at o
    __m256 acc[N][K];
    for (int j = 0; j < N; ++j) {
      for (int c = 0; c < K; ++c) acc[j][c] = _mm256_loadu_ps(y + j * y_stride + o + 8 * c);
    }
    for (int64_t r = 0; r < w.rank; ++r) {
      const uint16_t* b = w.b_t + r * w.out + o;
      for (int c = 0; c < K; ++c) {
        const __m256 bv = load_half8(b + 8 * c);
        for (int j = 0; j < N; ++j) acc[j][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(shrunk + j * w.rank + r), bv, acc[j][c]);
      }
    }
    for (int j = 0; j < N; ++j) {
      for (int c = 0; c < K; ++c) _mm256_storeu_ps(y + j * y_stride + o + 8 * c, acc[j][c]);
    }
  };
  for (; o + kStep <= w.out; o += kStep) chunk(std::integral_constant<int, C>{});
  for (; o + 8 <= w.out; o += 8) chunk(std::integral_constant<int, 1>{});
  for (; o < w.out; ++o) {
    for (int j = 0; j < N; ++j) {
      float sum = y[j * y_stride + o];
      for (int64_t r = 0; r < w.rank; ++r) sum += shrunk[j * w.rank + r] * _cvtsh_ss(w.b_t[r * w.out + o]);
      y[j * y_stride + o] = sum;
    }
  }
}

void avx2_shrink(const LoraWeights& w, const float* x, int64_t x_stride, int64_t m, float* shrunk) {
  int64_t j = 0;
  for (; j + 2 <= m; j += 2) shrink_block<2>(w, x + j * x_stride, x_stride, shrunk + j * w.rank);
  if (j < m) shrink_block<1>(w, x + j * x_stride, x_stride, shrunk + j * w.rank);
}

void avx2_expand(const LoraWeights& w, const float* shrunk, int64_t m, float* y, int64_t y_stride) {
  int64_t j = 0;
  for (; j + 4 <= m; j += 4) expand_block<4>(w, shrunk + j * w.rank, y + j * y_stride, y_stride);
  switch (m - j) {
    case 3: expand_block<3>(w, shrunk + j * w.rank, y + j * y_stride, y_stride); break;
    case 2: expand_block<2>(w, shrunk + j * w.rank, y + j * y_stride, y_stride); break;
    case 1: expand_block<1>(w, shrunk + j * w.rank, y + j * y_stride, y_stride); break;
    default: break;
  }
}

}  // namespace

const LoraKernels& avx2_lora_kernels() {
  static const LoraKernels kernels{avx2_shrink, avx2_expand};
  return kernels;
}

}  // namespace tern::kernels
