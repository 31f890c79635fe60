// The LoRA kernels (shrink through A, expand through B, in blocks of rows) of every ISA and weight type
// (F16, Q8) against the double-precision reference, on random data with odd sizes (tails of every SIMD
// width and of Q8's 32-value blocks), ranks and row counts (every block size, and blocks plus a
// remainder); and Q8's quantization against its stated bound.

#include "kernels/cpu/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tensor/half.h"

namespace tern::kernels {
namespace {

const char* type_name(LoraWeightType type) { return type == LoraWeightType::Q8 ? "q8" : "f16"; }

/// Random A and B^T kept as `type`: the kernels' inputs and the memory they point into.
struct RandomWeights {
  std::vector<uint16_t> a16, b16;
  std::vector<int8_t> a8, b8;
  std::vector<float> a_scales, b_scales;
  LoraWeights weights;

  RandomWeights(LoraWeightType type, int64_t rank, int64_t in, int64_t out, float scale, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> a(static_cast<size_t>(rank * in)), b_t(static_cast<size_t>(rank * out));
    for (auto& v : a) v = normal(rng) / std::sqrt(static_cast<float>(in));
    for (auto& v : b_t) v = normal(rng) * 0.1f;
    weights = {.type = type, .rank = rank, .in = in, .out = out, .scale = scale};
    if (type == LoraWeightType::F16) {
      for (float v : a) a16.push_back(float_to_f16(v));
      for (float v : b_t) b16.push_back(float_to_f16(v));
      weights.a = a16.data();
      weights.b_t = b16.data();
      return;
    }
    a8.resize(a.size());
    b8.resize(b_t.size());
    a_scales.resize(static_cast<size_t>(rank * lora_q8_blocks(in)));
    b_scales.resize(static_cast<size_t>(rank * lora_q8_blocks(out)));
    quantize_lora_q8(a.data(), rank, in, a8.data(), a_scales.data());
    quantize_lora_q8(b_t.data(), rank, out, b8.data(), b_scales.data());
    weights.a = a8.data();
    weights.b_t = b8.data();
    weights.a_scales = a_scales.data();
    weights.b_scales = b_scales.data();
  }
};

TEST(LoraKernel, EveryIsaAndWeightTypeMatchesTheReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<const LoraKernels*> implementations = {&scalar_lora_kernels()};
  if (best_isa() != Isa::SCALAR) implementations.push_back(&avx2_lora_kernels());
  for (const LoraKernels* kernels : implementations) {
    for (LoraWeightType type : {LoraWeightType::F16, LoraWeightType::Q8}) {
      for (int64_t rank : {1, 3, 8, 16, 64}) {
        // 100 -> 200: Q8 rows that end in a short block (100 = 3 x 32 + 4) after whole SIMD chunks.
        for (auto [in, out] : {std::pair<int64_t, int64_t>{1, 1}, {7, 13}, {37, 53}, {100, 200}, {576, 192}, {1536, 577}}) {
          for (int64_t m : {1, 2, 3, 4, 5, 7, 9}) {
            const RandomWeights random(type, rank, in, out, 1.75f, rng);
            // Rows at strides wider than the row, as in the forward pass's buffers.
            const int64_t x_stride = in + 5, y_stride = out + 3;
            std::vector<float> x(static_cast<size_t>(m * x_stride));
            for (auto& v : x) v = normal(rng);
            std::vector<float> y(static_cast<size_t>(m * y_stride)), expected(y.size());
            for (size_t j = 0; j < y.size(); ++j) y[j] = expected[j] = normal(rng);
            const LoraWeights& w = random.weights;
            std::vector<float> shrunk(static_cast<size_t>(m * rank));
            lora_add_rows(*kernels, w, x.data(), x_stride, y.data(), y_stride, m, shrunk.data());
            for (int64_t j = 0; j < m; ++j) lora_add_row_reference(w, x.data() + j * x_stride, expected.data() + j * y_stride);
            // F32 sums of `in`, then `rank` terms against double: relative error ~ sqrt(terms) x 2^-24.
            const double tolerance = 2e-5 * std::sqrt(static_cast<double>(in * rank));
            for (int64_t j = 0; j < m; ++j) {
              for (int64_t o = 0; o < y_stride; ++o) {
                const size_t at = static_cast<size_t>(j * y_stride + o);
                ASSERT_NEAR(y[at], expected[at], tolerance * (1 + std::fabs(expected[at])))
                    << type_name(type) << " rank " << rank << " in " << in << " out " << out << " rows " << m << " row " << j << " output " << o;
              }
            }
          }
        }
      }
    }
  }
}

// Q8 keeps every value within half a step (its block's largest / 254) of the original, in blocks of
// 32 along the row with a short last block; an outlier widens only its own block; a zero block stays 0.
TEST(LoraKernel, Q8QuantizationStaysWithinHalfAStep) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t length : {1, 31, 32, 33, 100, 577}) {
    const int64_t rows = 3, blocks = lora_q8_blocks(length);
    std::vector<float> values(static_cast<size_t>(rows * length));
    for (auto& v : values) v = normal(rng) * 0.02f;
    for (int64_t i = 0; i < std::min(length, kLoraQ8Block); ++i) values[static_cast<size_t>(length + i)] = 0;  // row 1, block 0
    values[0] = 3.0f;
    std::vector<int8_t> q(values.size());
    std::vector<float> scales(static_cast<size_t>(rows * blocks));
    quantize_lora_q8(values.data(), rows, length, q.data(), scales.data());
    EXPECT_EQ(scales[static_cast<size_t>(blocks)], 0.0f) << length;
    EXPECT_FLOAT_EQ(scales[0], 3.0f / 127) << length;
    if (blocks > 1) {
      EXPECT_LT(scales[1], 0.1f / 127) << length;
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < length; ++i) {
        const size_t at = static_cast<size_t>(r * length + i);
        const float scale = scales[static_cast<size_t>(r * blocks + i / kLoraQ8Block)];
        ASSERT_LE(std::fabs(q[at] * scale - values[at]), scale / 2 * 1.0001f) << "length " << length << " row " << r << " value " << i;
      }
    }
  }
}

// A row's result is the same bit for bit whatever else is in its block: what makes a request's tokens
// the same alone or in any batch.
TEST(LoraKernel, ARowsResultDoesNotDependOnItsBlock) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (LoraWeightType type : {LoraWeightType::F16, LoraWeightType::Q8}) {
    const int64_t rank = 16, in = 577, out = 203, m = 9;  // m = 9: blocks of 4 and of 2, and a rest
    const RandomWeights random(type, rank, in, out, 0.75f, rng);
    std::vector<float> x(m * in), together(m * out, 0.5f), alone(m * out, 0.5f), shrunk(m * rank);
    for (auto& v : x) v = normal(rng);
    const LoraKernels& kernels = lora_kernels();
    lora_add_rows(kernels, random.weights, x.data(), in, together.data(), out, m, shrunk.data());
    for (int64_t j = 0; j < m; ++j) {
      lora_add_rows(kernels, random.weights, x.data() + j * in, in, alone.data() + j * out, out, 1, shrunk.data());
    }
    EXPECT_EQ(together, alone) << type_name(type);
  }
}

}  // namespace
}  // namespace tern::kernels
