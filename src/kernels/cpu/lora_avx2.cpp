// AVX2 + FMA + F16C LoRA kernels (lora.h); compiled with -mavx2 -mfma -mf16c, called only on
// machines that have them. Rows go in blocks (2 for the shrink, up to 4 for the expand): each weight
// vector is loaded and converted to F32 once per block (F16, or Q8 times its block's scale), and 8
// independent FMA chains keep the FMA units busy. The kernels are templates over how a row of
// weights is read (F16Rows, Q8Rows); the arithmetic after the load is the same for both.

#include <immintrin.h>

#include <type_traits>

#include "kernels/cpu/lora.h"

namespace tern::kernels {
namespace {

inline __m256 load_half8(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// How far ahead the kernels prefetch the weights they stream, in values. A decode step of many adapters
// reads each adapter's A and B once, from memory: without prefetching the loads wait on memory one
// short stream after another (B is read as `rank` streams at once) and the kernels ran at a quarter of
// their in-cache speed (bench/lora_kernels with 256 adapters cycled).
constexpr int64_t kPrefetchAhead = 512;

inline void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }

// Row r of a [rows][length] F16 matrix.
struct F16Rows {
  const uint16_t* data;
  int64_t length;
  static constexpr bool kBlockScaled = false;
  static constexpr int64_t kValuesPerLine = 32;
  __m256 load8(int64_t r, int64_t i) const { return load_half8(data + r * length + i); }
  /// Brings the line kPrefetchAhead values past (r, i) in, in the matrix's row-major order.
  void prefetch_ahead(int64_t r, int64_t i) const { prefetch(data + r * length + i + kPrefetchAhead); }
  float at(int64_t r, int64_t i) const { return _cvtsh_ss(data[r * length + i]); }
};

// Row r of a [rows][length] Q8 matrix with a scale per kLoraQ8Block values; 8 values at i never
// straddle two blocks (i is a multiple of 8 and the block 32).
struct Q8Rows {
  const int8_t* data;
  const float* scales;
  int64_t length, blocks;
  Q8Rows(const void* q, const float* s, int64_t n) : data(static_cast<const int8_t*>(q)), scales(s), length(n), blocks(lora_q8_blocks(n)) {}
  static constexpr bool kBlockScaled = true;
  static constexpr int64_t kValuesPerLine = 64;
  float scale(int64_t r, int64_t i) const { return scales[r * blocks + i / kLoraQ8Block]; }
  /// The 8 int8 values at (r, i) as floats, without their scale (the kernels apply it once per block).
  __m256 load8_unscaled(int64_t r, int64_t i) const {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(data + r * length + i))));
  }
  void prefetch_ahead(int64_t r, int64_t i) const {
    prefetch(data + r * length + i + kPrefetchAhead);
    prefetch(scales + r * blocks + (i + kPrefetchAhead) / kLoraQ8Block);
  }
  __m256 load8(int64_t r, int64_t i) const { return _mm256_mul_ps(load8_unscaled(r, i), _mm256_set1_ps(scale(r, i))); }
  float at(int64_t r, int64_t i) const { return static_cast<float>(data[r * length + i]) * scale(r, i); }
};

inline float horizontal_sum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// Shrink: N rows (1 or 2), 4 vectors of 8 per row per iteration. A row's sums must not depend on how
// many rows share its block (a request gives the same tokens alone or in any batch), so C is the same
// for every N: 4 partial sums per row, added in one order.
template <int N, typename Rows, int C = 4>
void shrink_block(const LoraWeights& w, const Rows& a, const float* x, int64_t x_stride, float* shrunk) {
  constexpr int64_t kStep = 8 * C;
  for (int64_t r = 0; r < w.rank; ++r) {
    __m256 acc[N][C];
    for (int j = 0; j < N; ++j) {
      for (int c = 0; c < C; ++c) acc[j][c] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + kStep <= w.in; i += kStep) {
      // A is one contiguous stream: prefetching past this row's end brings in the next row's start.
      for (int64_t line = 0; line < kStep; line += Rows::kValuesPerLine) a.prefetch_ahead(r, i + line);
      if constexpr (Rows::kBlockScaled) {
        // kStep is one Q8 block: its products are summed unscaled, then scaled once, into one of two
        // accumulators by block parity (two chains across blocks).
        static_assert(kStep == kLoraQ8Block && C >= 2);
        __m256 wv[C];
        for (int c = 0; c < C; ++c) wv[c] = a.load8_unscaled(r, i + 8 * c);
        const __m256 scale = _mm256_set1_ps(a.scale(r, i));
        const int parity = static_cast<int>((i / kStep) & 1);
        for (int j = 0; j < N; ++j) {
          const float* xj = x + j * x_stride + i;
          __m256 block = _mm256_mul_ps(wv[0], _mm256_loadu_ps(xj));
          for (int c = 1; c < C; ++c) block = _mm256_fmadd_ps(wv[c], _mm256_loadu_ps(xj + 8 * c), block);
          acc[j][parity] = _mm256_fmadd_ps(block, scale, acc[j][parity]);
        }
      } else {
        for (int c = 0; c < C; ++c) {
          const __m256 wv = a.load8(r, i + 8 * c);
          for (int j = 0; j < N; ++j) acc[j][c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * x_stride + i + 8 * c), acc[j][c]);
        }
      }
    }
    for (; i + 8 <= w.in; i += 8) {
      const __m256 wv = a.load8(r, i);
      for (int j = 0; j < N; ++j) acc[j][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + j * x_stride + i), acc[j][0]);
    }
    for (int j = 0; j < N; ++j) {
      __m256 total = acc[j][0];
      for (int c = 1; c < C; ++c) total = _mm256_add_ps(total, acc[j][c]);
      float sum = horizontal_sum(total);
      for (int64_t t = i; t < w.in; ++t) sum += x[j * x_stride + t] * a.at(r, t);
      shrunk[j * w.rank + r] = w.scale * sum;
    }
  }
}

// Expand: N rows (up to 4), C vectors of 8 outputs per iteration: N * C independent FMA chains, more
// outputs per iteration for fewer rows. Each output's sum runs over r in order whatever C is, so the
// result does not depend on N either.
template <int N, typename Rows, int C = (N <= 2 ? 8 / N : 2)>
void expand_block(const LoraWeights& w, const Rows& b_t, const float* shrunk, float* y, int64_t y_stride) {
  constexpr int64_t kStep = 8 * C;
  int64_t o = 0;
  auto chunk = [&]<int K>(std::integral_constant<int, K>) {  // K vectors of 8 outputs at o
    __m256 acc[N][K];
    for (int j = 0; j < N; ++j) {
      for (int c = 0; c < K; ++c) acc[j][c] = _mm256_loadu_ps(y + j * y_stride + o + 8 * c);
    }
    for (int64_t r = 0; r < w.rank; ++r) {
      for (int64_t line = 0; line < 8 * K; line += Rows::kValuesPerLine) b_t.prefetch_ahead(r, o + line);
      if constexpr (Rows::kBlockScaled) {
        // The block's scale goes on the shrunk value (one multiply per row and block, not per vector);
        // an output's terms are the same whatever K and N are.
        __m256 coef[N];
        for (int c = 0; c < K; ++c) {
          if (c == 0 || (o + 8 * c) % kLoraQ8Block == 0) {
            const float scale = b_t.scale(r, o + 8 * c);
            for (int j = 0; j < N; ++j) coef[j] = _mm256_set1_ps(shrunk[j * w.rank + r] * scale);
          }
          const __m256 bv = b_t.load8_unscaled(r, o + 8 * c);
          for (int j = 0; j < N; ++j) acc[j][c] = _mm256_fmadd_ps(coef[j], bv, acc[j][c]);
        }
      } else {
        for (int c = 0; c < K; ++c) {
          const __m256 bv = b_t.load8(r, o + 8 * c);
          for (int j = 0; j < N; ++j) acc[j][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(shrunk + j * w.rank + r), bv, acc[j][c]);
        }
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
      for (int64_t r = 0; r < w.rank; ++r) {
        if constexpr (Rows::kBlockScaled) {
          sum += shrunk[j * w.rank + r] * b_t.scale(r, o) * b_t.data[r * b_t.length + o];
        } else {
          sum += shrunk[j * w.rank + r] * b_t.at(r, o);
        }
      }
      y[j * y_stride + o] = sum;
    }
  }
}

template <typename Rows>
void shrink_rows(const LoraWeights& w, const Rows& a, const float* x, int64_t x_stride, int64_t m, float* shrunk) {
  int64_t j = 0;
  for (; j + 2 <= m; j += 2) shrink_block<2>(w, a, x + j * x_stride, x_stride, shrunk + j * w.rank);
  if (j < m) shrink_block<1>(w, a, x + j * x_stride, x_stride, shrunk + j * w.rank);
}

template <typename Rows>
void expand_rows(const LoraWeights& w, const Rows& b_t, const float* shrunk, int64_t m, float* y, int64_t y_stride) {
  int64_t j = 0;
  for (; j + 4 <= m; j += 4) expand_block<4>(w, b_t, shrunk + j * w.rank, y + j * y_stride, y_stride);
  switch (m - j) {
    case 3: expand_block<3>(w, b_t, shrunk + j * w.rank, y + j * y_stride, y_stride); break;
    case 2: expand_block<2>(w, b_t, shrunk + j * w.rank, y + j * y_stride, y_stride); break;
    case 1: expand_block<1>(w, b_t, shrunk + j * w.rank, y + j * y_stride, y_stride); break;
    default: break;
  }
}

void avx2_shrink(const LoraWeights& w, const float* x, int64_t x_stride, int64_t m, float* shrunk) {
  if (w.type == LoraWeightType::Q8) {
    shrink_rows(w, Q8Rows(w.a, w.a_scales, w.in), x, x_stride, m, shrunk);
  } else {
    shrink_rows(w, F16Rows{static_cast<const uint16_t*>(w.a), w.in}, x, x_stride, m, shrunk);
  }
}

void avx2_expand(const LoraWeights& w, const float* shrunk, int64_t m, float* y, int64_t y_stride) {
  if (w.type == LoraWeightType::Q8) {
    expand_rows(w, Q8Rows(w.b_t, w.b_scales, w.out), shrunk, m, y, y_stride);
  } else {
    expand_rows(w, F16Rows{static_cast<const uint16_t*>(w.b_t), w.out}, shrunk, m, y, y_stride);
  }
}

}  // namespace

const LoraKernels& avx2_lora_kernels() {
  static const LoraKernels kernels{avx2_shrink, avx2_expand};
  return kernels;
}

}  // namespace tern::kernels
