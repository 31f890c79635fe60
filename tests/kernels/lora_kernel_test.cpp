// The LoRA kernels (shrink through A, expand through B, in blocks of rows) of every ISA against the
// double-precision reference, on random data with odd sizes (tails of every SIMD width), ranks and
// row counts (every block size, and blocks plus a remainder).

#include "kernels/cpu/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tensor/half.h"

namespace tern::kernels {
namespace {

TEST(LoraKernel, EveryIsaMatchesTheReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<const LoraKernels*> implementations = {&scalar_lora_kernels()};
  if (best_isa() != Isa::SCALAR) implementations.push_back(&avx2_lora_kernels());
  for (const LoraKernels* kernels : implementations) {
    for (int64_t rank : {1, 3, 8, 16, 64}) {
      for (auto [in, out] : {std::pair<int64_t, int64_t>{1, 1}, {7, 13}, {37, 53}, {576, 192}, {1536, 577}}) {
        for (int64_t m : {1, 2, 3, 4, 7}) {
          std::vector<uint16_t> a(static_cast<size_t>(rank * in)), b_t(static_cast<size_t>(rank * out));
          for (auto& v : a) v = float_to_f16(normal(rng) / std::sqrt(static_cast<float>(in)));
          for (auto& v : b_t) v = float_to_f16(normal(rng) * 0.1f);
          // Rows at strides wider than the row, as in the forward pass's buffers.
          const int64_t x_stride = in + 5, y_stride = out + 3;
          std::vector<float> x(static_cast<size_t>(m * x_stride));
          for (auto& v : x) v = normal(rng);
          std::vector<float> y(static_cast<size_t>(m * y_stride)), expected(y.size());
          for (size_t j = 0; j < y.size(); ++j) y[j] = expected[j] = normal(rng);
          const LoraWeights w{.a = a.data(), .b_t = b_t.data(), .rank = rank, .in = in, .out = out, .scale = 1.75f};
          std::vector<float> shrunk(static_cast<size_t>(m * rank));
          lora_add_rows(*kernels, w, x.data(), x_stride, y.data(), y_stride, m, shrunk.data());
          for (int64_t j = 0; j < m; ++j) lora_add_row_reference(w, x.data() + j * x_stride, expected.data() + j * y_stride);
          // F32 sums of `in`, then `rank` terms against double: relative error ~ sqrt(terms) x 2^-24.
          const double tolerance = 2e-5 * std::sqrt(static_cast<double>(in * rank));
          for (int64_t j = 0; j < m; ++j) {
            for (int64_t o = 0; o < y_stride; ++o) {
              const size_t at = static_cast<size_t>(j * y_stride + o);
              ASSERT_NEAR(y[at], expected[at], tolerance * (1 + std::fabs(expected[at])))
                  << "rank " << rank << " in " << in << " out " << out << " rows " << m << " row " << j << " output " << o;
            }
          }
        }
      }
    }
  }
}

// A row's result is the same bit for bit whatever else is in its block: what makes a request's tokens
// the same alone or in any batch.
TEST(LoraKernel, ARowsResultDoesNotDependOnItsBlock) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rank = 16, in = 577, out = 203, m = 7;
  std::vector<uint16_t> a(rank * in), b_t(rank * out);
  for (auto& v : a) v = float_to_f16(normal(rng) * 0.05f);
  for (auto& v : b_t) v = float_to_f16(normal(rng) * 0.1f);
  std::vector<float> x(m * in), together(m * out, 0.5f), alone(m * out, 0.5f), shrunk(m * rank);
  for (auto& v : x) v = normal(rng);
  const LoraWeights w{.a = a.data(), .b_t = b_t.data(), .rank = rank, .in = in, .out = out, .scale = 0.75f};
  const LoraKernels& kernels = lora_kernels();
  lora_add_rows(kernels, w, x.data(), in, together.data(), out, m, shrunk.data());
  for (int64_t j = 0; j < m; ++j) lora_add_rows(kernels, w, x.data() + j * in, in, alone.data() + j * out, out, 1, shrunk.data());
  EXPECT_EQ(together, alone);
}

}  // namespace
}  // namespace tern::kernels
