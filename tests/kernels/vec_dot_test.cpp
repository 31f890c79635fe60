// Every SIMD kernel against the scalar reference on random data, including row lengths that are odd
// numbers of blocks and every count of activation rows.

#include "kernels/cpu/vec_dot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/interleave.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vector_ops.h"
#include "tensor/dequantize.h"
#include "tensor/half.h"

namespace tern::kernels {
namespace {

// Random weight bytes with sane (finite, small) half scales at the given offsets of each block.
std::vector<uint8_t> random_weights(DType type, int64_t k, int64_t rows, std::mt19937& rng) {
  const DTypeInfo& info = dtype_info(type);
  std::vector<uint8_t> bytes(dtype_bytes(info, k) * rows);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(byte(rng));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<int> half_offsets;
  switch (type) {
    case DType::Q4_0: case DType::Q5_0: case DType::Q8_0: half_offsets = {0}; break;
    case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: half_offsets = {0, 2}; break;
    case DType::Q6_K: half_offsets = {208}; break;
    case DType::Q2_K: half_offsets = {80, 82}; break;
    case DType::Q3_K: half_offsets = {108}; break;
    default: break;
  }
  if (type == DType::F32) {
    for (size_t i = 0; i < bytes.size() / 4; ++i) reinterpret_cast<float*>(bytes.data())[i] = normal(rng);
  } else if (type == DType::F16) {
    for (size_t i = 0; i < bytes.size() / 2; ++i) reinterpret_cast<uint16_t*>(bytes.data())[i] = float_to_f16(normal(rng));
  }
  for (size_t block = 0; block < bytes.size() / info.block_bytes; ++block) {
    for (int offset : half_offsets) {
      const uint16_t h = float_to_f16(normal(rng) * 0.01f);
      std::memcpy(bytes.data() + block * info.block_bytes + offset, &h, 2);
    }
  }
  return bytes;
}

class VecDot : public ::testing::TestWithParam<DType> {};

TEST_P(VecDot, SimdMatchesScalarReference) {
  const DType type = GetParam();
  const DTypeInfo& info = dtype_info(type);
  std::mt19937 rng(42);
  for (Isa isa : {Isa::AVX2, Isa::AVX512_VNNI}) {
    if (static_cast<int>(isa) > static_cast<int>(best_isa())) continue;  // not on this machine
    const VecDotKernel fast = vec_dot_kernel(type, isa);
    if (fast.fn == nullptr) continue;
    const VecDotKernel reference = scalar_vec_dot(type);
    ASSERT_EQ(fast.act_format, reference.act_format);
    for (int64_t num_blocks : {1, 3, 7, 10}) {
      const int64_t k = num_blocks * info.block_size + (info.block_size == 1 ? 5 : 0);  // odd lengths for F32/F16
      const auto weights = random_weights(type, k, 1, rng);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> x(k * kMaxActRows);
      for (float& v : x) v = normal(rng);
      const size_t stride = act_row_bytes(fast.act_format, k);
      std::vector<uint8_t> act(stride * kMaxActRows);
      for (int r = 0; r < kMaxActRows; ++r) quantize_act_row(fast.act_format, x.data() + r * k, act.data() + r * stride, k);
      for (int rows = 1; rows <= kMaxActRows; ++rows) {
        float expected[kMaxActRows], got[kMaxActRows];
        reference.fn(k, weights.data(), act.data(), stride, rows, expected);
        fast.fn(k, weights.data(), act.data(), stride, rows, got);
        for (int r = 0; r < rows; ++r) {
          // Integer parts are exact; only float accumulation order differs.
          EXPECT_NEAR(got[r], expected[r], 1e-4f * (1.0f + std::fabs(expected[r])))
              << info.name << " " << isa_name(isa) << " k=" << k << " rows=" << rows << " r=" << r;
        }
      }
    }
  }
}

// The quantized product approximates the float product of dequantized weights and activations.
TEST_P(VecDot, ApproximatesTheFloatProduct) {
  const DType type = GetParam();
  const DTypeInfo& info = dtype_info(type);
  std::mt19937 rng(7);
  const int64_t k = 5 * 256;
  if (k % info.block_size != 0) GTEST_SKIP();
  const auto weights = random_weights(type, k, 1, rng);
  std::vector<float> w(k);
  ASSERT_TRUE(dequantize(type, weights, w));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(k);
  for (float& v : x) v = normal(rng);
  const VecDotKernel kernel = vec_dot_kernel(type);
  std::vector<uint8_t> act(act_row_bytes(kernel.act_format, k));
  quantize_act_row(kernel.act_format, x.data(), act.data(), k);
  float got = 0;
  kernel.fn(k, weights.data(), act.data(), act.size(), 1, &got);
  double exact = 0, magnitude = 0;
  for (int64_t i = 0; i < k; ++i) exact += static_cast<double>(w[i]) * x[i], magnitude += std::fabs(w[i] * x[i]);
  // 8-bit activations: relative error of each term about 1/254; bound on the sum of magnitudes.
  EXPECT_NEAR(got, exact, 0.01 * magnitude) << info.name;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, VecDot,
                         ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K,
                                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::F32, DType::F16),
                         [](const auto& info) { return std::string(dtype_info(info.param).name); });

// The interleaved layout and its kernel against the scalar reference on the file rows: every row
// count of a group (13 rows = one full and one partial group; 21 and 45 also take the two-group
// kernel where there is one, whole and partial), odd numbers of blocks, every count of activation
// rows; a row's output is the same whatever activation rows share its call, and the two-group kernel
// gives the single-group kernel's bits.
class Interleaved : public ::testing::TestWithParam<DType> {};

TEST_P(Interleaved, MatchesScalarReference) {
  const DType type = GetParam();
  const DTypeInfo& info = dtype_info(type);
  ASSERT_TRUE(can_interleave(type));
  if (vec_dot_kernel(type).interleaved == nullptr) GTEST_SKIP() << "no interleaved kernel on this machine";
  std::mt19937 rng(11);
  for (const int64_t n : {13, 21, 45})
  for (Isa isa : {Isa::AVX2, Isa::AVX512_VNNI}) {  // one layout, a kernel per ISA
   if (static_cast<int>(isa) > static_cast<int>(best_isa())) continue;
   const VecDotKernel kernel = vec_dot_kernel(type, isa);
   ASSERT_NE(kernel.interleaved, nullptr) << isa_name(isa);
   for (int64_t num_blocks : {1, 3, 7, 10}) {
    const int64_t k = num_blocks * info.block_size;
    const auto weights = random_weights(type, k, n, rng);
    const size_t row_bytes = dtype_bytes(info, k);
    WeightMatrix w = make_weight_matrix(type, k, n, weights.data(), WeightLayout::FASTEST);
    ASSERT_TRUE(w.interleaved);
    w.kernel = kernel;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(k * kMaxActRows);
    for (float& v : x) v = normal(rng);
    const size_t stride = act_row_bytes(kernel.act_format, k);
    std::vector<uint8_t> act(stride * kMaxActRows);
    for (int r = 0; r < kMaxActRows; ++r) quantize_act_row(kernel.act_format, x.data() + r * k, act.data() + r * stride, k);
    const VecDotKernel reference = scalar_vec_dot(type);
    for (int rows = 1; rows <= kMaxActRows; ++rows) {
      std::vector<float> y(rows * n, -1.0f);
      matmul_units(w, act.data(), stride, rows, y.data(), 0, row_units(w));
      for (int64_t j = 0; j < n; ++j) {
        float want[kMaxActRows];
        reference.fn(k, weights.data() + j * row_bytes, act.data(), stride, rows, want);
        for (int r = 0; r < rows; ++r) {
          EXPECT_NEAR(y[r * n + j], want[r], 1e-4f * (1.0f + std::fabs(want[r])))
              << info.name << " " << isa_name(isa) << " k=" << k << " rows=" << rows << " weight row " << j << " r=" << r;
        }
      }
      std::vector<float> alone(n);
      matmul_units(w, act.data(), stride, 1, alone.data(), 0, row_units(w));
      for (int64_t j = 0; j < n; ++j) EXPECT_EQ(alone[j], y[j]) << info.name << " batch invariance, row " << j;
      if (w.kernel.interleaved_pair != nullptr) {
        WeightMatrix single_groups = w;
        single_groups.kernel.interleaved_pair = nullptr;
        std::vector<float> by_group(rows * n, -1.0f);
        matmul_units(single_groups, act.data(), stride, rows, by_group.data(), 0, row_units(w));
        for (int64_t j = 0; j < rows * n; ++j) EXPECT_EQ(by_group[j], y[j]) << info.name << " two-group kernel, output " << j;
      }
    }
   }
  }
}

// Every row comes back byte for byte from its interleaved group (tied embeddings are read this way).
TEST_P(Interleaved, RowsComeBackExactly) {
  const DType type = GetParam();
  const DTypeInfo& info = dtype_info(type);
  std::mt19937 rng(17);
  const int64_t k = 3 * (info.block_size == 256 ? 256 : 64), n = 13;
  const auto weights = random_weights(type, k, n, rng);
  const size_t row_bytes = dtype_bytes(info, k), group_bytes = interleaved_group_bytes(type, k);
  std::vector<uint8_t> groups(2 * group_bytes), row(row_bytes);
  interleave_group(type, weights.data(), row_bytes, 8, k, groups.data());
  interleave_group(type, weights.data() + 8 * row_bytes, row_bytes, 5, k, groups.data() + group_bytes);
  for (int64_t j = 0; j < n; ++j) {
    deinterleave_row(type, groups.data() + (j / 8) * group_bytes, static_cast<int>(j % 8), k, row.data());
    EXPECT_EQ(std::memcmp(row.data(), weights.data() + j * row_bytes, row_bytes), 0) << info.name << " row " << j;
  }
}

INSTANTIATE_TEST_SUITE_P(BlockTypes, Interleaved,
                         ::testing::Values(DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K,
                                           DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_info(info.param).name); });

// Whole products split across threads (in units of 8 rows; 37 rows leave a partial unit), in the
// file layout and the interleaved one.
TEST(Matmul, MatchesPerRowDotsForEveryRowCountAndThreadCount) {
  for (DType type : {DType::Q4_K, DType::Q6_K, DType::Q4_1, DType::Q5_0}) {
   for (WeightLayout layout : {WeightLayout::FILE, WeightLayout::FASTEST}) {
    std::mt19937 rng(3);
    const int64_t k = 3 * 256, n = 37;
    const auto weights = random_weights(type, k, n, rng);
    const WeightMatrix w = make_weight_matrix(type, k, n, weights.data(), layout);
    std::vector<float> dequantized(k * n);
    ASSERT_TRUE(dequantize(type, weights, dequantized));
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      for (int64_t m : {1, 5, 9}) {
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> x(k * m), y(n * m);
        for (float& v : x) v = normal(rng);
        MatmulScratch scratch;
        matmul(pool, w, x.data(), m, y.data(), scratch);
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t j = 0; j < n; ++j) {
            double exact = 0, magnitude = 0;
            for (int64_t c = 0; c < k; ++c) {
              exact += static_cast<double>(dequantized[j * k + c]) * x[i * k + c];
              magnitude += std::fabs(dequantized[j * k + c] * x[i * k + c]);
            }
            ASSERT_NEAR(y[i * n + j], exact, 0.01 * magnitude)
                << dtype_info(type).name << (w.interleaved ? " interleaved" : "") << " m=" << m << " i=" << i << " j=" << j;
          }
        }
      }
    }
   }
  }
}

TEST(VectorOps, SimdMatchesScalar) {
  if (best_isa() == Isa::SCALAR) GTEST_SKIP();
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n : {1, 7, 8, 33, 40, 72, 256}) {
    std::vector<float> x(n), y(n), y2(n);
    std::vector<uint16_t> h(n), h2(n);
    for (int64_t i = 0; i < n; ++i) x[i] = normal(rng), h[i] = float_to_f16(normal(rng)), y[i] = y2[i] = normal(rng);
    EXPECT_NEAR(avx2_vector_ops().dot_f32_f16(n, x.data(), h.data()), scalar_vector_ops().dot_f32_f16(n, x.data(), h.data()), 1e-4 * n);
    avx2_vector_ops().axpy_f16(n, 0.5f, h.data(), y.data());
    scalar_vector_ops().axpy_f16(n, 0.5f, h.data(), y2.data());
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], y2[i], 1e-5);
    if (n % 8 == 0 || n == 33) {  // block helpers: rows of n with a wider stride, 1 to 19 rows, 1 to 6 queries
      constexpr int64_t kMaxRows = 19;  // keys go 8 at a time: two groups of 8 and a remainder
      const int64_t stride = n + 8;
      std::vector<uint16_t> rows(stride * kMaxRows);
      for (auto& v : rows) v = float_to_f16(normal(rng));
      std::vector<float> queries(6 * n), weights(6 * kMaxRows);
      for (float& v : queries) v = normal(rng);
      for (float& v : weights) v = normal(rng);
      for (const VectorOps* ops : {&avx2_vector_ops(), &vector_ops()}) {
        for (int num_q = 1; num_q <= 6; ++num_q) {
          for (int64_t count = 1; count <= kMaxRows; ++count) {
            float fast[6 * kMaxRows], slow[6 * kMaxRows];
            ops->dot_rows_f16(queries.data(), num_q, rows.data(), stride, count, n, fast, kMaxRows);
            scalar_vector_ops().dot_rows_f16(queries.data(), num_q, rows.data(), stride, count, n, slow, kMaxRows);
            for (int g = 0; g < num_q; ++g) {
              for (int64_t r = 0; r < count; ++r) EXPECT_NEAR(fast[g * kMaxRows + r], slow[g * kMaxRows + r], 1e-4 * n);
              float alone[kMaxRows];  // a query's scores do not depend on the queries beside it
              ops->dot_rows_f16(queries.data() + g * n, 1, rows.data(), stride, count, n, alone, kMaxRows);
              for (int64_t r = 0; r < count; ++r) EXPECT_EQ(alone[r], fast[g * kMaxRows + r]);
              for (int64_t r = 0; r < count; ++r) {  // nor on the keys beside it (8 keys are summed together)
                float one_key = 0;
                ops->dot_rows_f16(queries.data() + g * n, 1, rows.data() + r * stride, stride, 1, n, &one_key, 1);
                EXPECT_EQ(one_key, fast[g * kMaxRows + r]) << "key " << r << " of " << count;
              }
            }
            std::vector<float> out_fast(num_q * n, 1.0f), out_slow(num_q * n, 1.0f);
            ops->axpy_rows_f16(weights.data(), kMaxRows, num_q, rows.data(), stride, count, n, out_fast.data());
            scalar_vector_ops().axpy_rows_f16(weights.data(), kMaxRows, num_q, rows.data(), stride, count, n, out_slow.data());
            for (int64_t d = 0; d < num_q * n; ++d) EXPECT_NEAR(out_fast[d], out_slow[d], 1e-4 * count);
            for (int g = 0; g < num_q; ++g) {
              std::vector<float> alone(n, 1.0f);
              ops->axpy_rows_f16(weights.data() + g * kMaxRows, kMaxRows, 1, rows.data(), stride, count, n, alone.data());
              for (int64_t d = 0; d < n; ++d) EXPECT_EQ(alone[d], out_fast[g * n + d]);
            }
          }
        }
      }
    }
    avx2_vector_ops().to_f16(n, x.data(), h.data());
    scalar_vector_ops().to_f16(n, x.data(), h2.data());
    EXPECT_EQ(h, h2);
  }
}

// Attention's softmax: the vectorised exp stays within an ulp or two of std::exp, so after rounding to
// F16 the weights agree with the scalar reference to one F16 step (2^-11 relative) at most; they sum
// to 1 within F16 rounding; far-below-max scores give exactly 0; every tail length is covered.
TEST(VectorOps, SoftmaxF16MatchesScalar) {
  if (best_isa() == Isa::SCALAR) GTEST_SKIP();
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int64_t n : {1, 2, 7, 8, 9, 33, 300, 1025}) {
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng);
    if (n > 3) x[1] = -1e4f, x[2] = -300.0f;  // e^-1250 and e^-37.5 times the max: 0 and tiny
    std::vector<float> fast = x, reference = x;
    avx2_vector_ops().softmax_f16(n, 0.125f, fast.data());
    scalar_vector_ops().softmax_f16(n, 0.125f, reference.data());
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(fast[i], reference[i], reference[i] / 1024.0f + 1e-7f) << "n=" << n << " i=" << i;
      EXPECT_EQ(f16_to_float(float_to_f16(fast[i])), fast[i]) << "not an F16 value";
      sum += fast[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-3 * n / 8 + 1e-3) << "n=" << n;
    if (n > 3) {
      EXPECT_EQ(fast[1], 0.0f);
    }
    std::vector<float> rounded(n), rounded_reference(n);
    avx2_vector_ops().round_f16(n, x.data(), rounded.data());
    scalar_vector_ops().round_f16(n, x.data(), rounded_reference.data());
    EXPECT_EQ(rounded, rounded_reference);
  }
}

// Sampling weights: the vectorised exp within 1e-6 (relative to the largest weight, 1) of the scalar
// reference at every tail length and at a real vocabulary's size; masked (-inf) logits and terms below
// e^-87 exactly 0; the largest exactly 1; the sums (double) agree; a row masked everywhere gives 0.
TEST(VectorOps, SamplingWeightsMatchScalar) {
  if (best_isa() == Isa::SCALAR) GTEST_SKIP();
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int64_t n : {1, 2, 7, 8, 9, 15, 33, 1001, 49152}) {
    for (float inverse_temperature : {1.0f, 1.0f / 0.7f, 1.0f / 1.5f, 25.0f}) {
      std::vector<float> logits(static_cast<size_t>(n));
      for (float& v : logits) v = normal(rng);
      if (n > 4) logits[1] = -INFINITY, logits[3] = -INFINITY, logits[4] = logits[0] - 200.0f;
      std::vector<float> fast(static_cast<size_t>(n)), reference(static_cast<size_t>(n));
      const double fast_sum = avx2_vector_ops().sampling_weights(n, inverse_temperature, logits.data(), fast.data());
      const double reference_sum = scalar_vector_ops().sampling_weights(n, inverse_temperature, logits.data(), reference.data());
      float largest = 0;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(fast[i], reference[i], 1e-6f) << "n=" << n << " 1/T=" << inverse_temperature << " i=" << i;
        largest = std::max(largest, fast[i]);
      }
      EXPECT_EQ(largest, 1.0f);
      EXPECT_NEAR(fast_sum, reference_sum, 1e-6 * static_cast<double>(n));
      if (n > 4) {
        EXPECT_EQ(fast[1], 0.0f);
        EXPECT_EQ(fast[3], 0.0f);
        if (inverse_temperature >= 1.0f) {
          EXPECT_EQ(fast[4], 0.0f);  // e^-200 or less
        }
      }
      // In place (the sampler writes the weights over its logits row) gives the same weights.
      std::vector<float> in_place = logits;
      avx2_vector_ops().sampling_weights(n, inverse_temperature, in_place.data(), in_place.data());
      EXPECT_EQ(in_place, fast);
    }
  }
  std::vector<float> masked(19, -INFINITY), out(19, 5.0f);
  EXPECT_EQ(avx2_vector_ops().sampling_weights(19, 1.0f, masked.data(), out.data()), 0.0);
  EXPECT_EQ(out, std::vector<float>(19, 0.0f));
}

// The SIMD activation quantizer writes the reference's bytes, including all-zero and tiny blocks.
TEST(VectorOps, QuantizeQ8MatchesReferenceBytes) {
  if (best_isa() == Isa::SCALAR) GTEST_SKIP();
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const int64_t k = 32 * 9;
  std::vector<float> x(k);
  for (float& v : x) v = normal(rng);
  for (int j = 32; j < 64; ++j) x[j] = 0.0f;
  for (int j = 64; j < 96; ++j) x[j] *= 1e-30f;
  x[100] = 1e6f;
  std::vector<ActQ8> fast(k / 32), reference(k / 32);
  avx2_vector_ops().quantize_q8(x.data(), fast.data(), k);
  quantize_q8_reference(x.data(), reference.data(), k);
  EXPECT_EQ(std::memcmp(fast.data(), reference.data(), fast.size() * sizeof(ActQ8)), 0);
}

// The same for the K types' 256-value format: ties in magnitude with opposite signs (the first one
// sets the scale's sign), an all-zero block, a value that rounds to +128 before the cap.
TEST(VectorOps, QuantizeQ8KMatchesReferenceBytes) {
  if (best_isa() == Isa::SCALAR) GTEST_SKIP();
  std::mt19937 rng(19);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  const int64_t k = 256 * 5;
  std::vector<float> x(k);
  for (float& v : x) v = normal(rng);
  for (int j = 256; j < 512; ++j) x[j] = 0.0f;
  x[520] = -9.0f, x[700] = 9.0f;   // block 2: first of equal magnitudes is negative
  x[800] = 9.0f, x[900] = -9.0f;   // block 3: positive first
  x[1100] = -8.0f, x[1101] = 8.0f;  // block 4: +8 maps to +127, not past it
  std::vector<ActQ8K> fast(k / 256), reference(k / 256);
  avx2_vector_ops().quantize_q8k(x.data(), fast.data(), k);
  quantize_q8k_reference(x.data(), reference.data(), k);
  EXPECT_EQ(std::memcmp(fast.data(), reference.data(), fast.size() * sizeof(ActQ8K)), 0);
}

TEST(Ops, RmsNormSoftmaxRope) {
  std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> out(4);
  kernels::rms_norm(x.data(), nullptr, out.data(), 4, 0.0f);
  EXPECT_NEAR(out[3], 4 / std::sqrt(7.5), 1e-6);
  std::vector<float> s = {1, 1, 1, 1};
  softmax(s.data(), 4);
  EXPECT_FLOAT_EQ(s[2], 0.25f);
  std::vector<float> r = {1, 0, 1, 0};
  rope(r.data(), 4, 4, 0, 10000.0f, RopeStyle::NORM);  // position 0 is the identity
  EXPECT_FLOAT_EQ(r[0], 1.0f);
  rope(r.data(), 4, 4, 1, 10000.0f, RopeStyle::NORM);
  EXPECT_NEAR(r[0], std::cos(1.0), 1e-6);
  EXPECT_NEAR(r[1], std::sin(1.0), 1e-6);
}

}  // namespace
}  // namespace tern::kernels
