// The LoRA row kernel (shrink through A, expand through B) on every ISA's vector ops against the
// double-precision reference, on random data with odd sizes (tails of every SIMD width) and ranks.

#include "kernels/cpu/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "tensor/half.h"

namespace tern::kernels {
namespace {

TEST(LoraKernel, SimdMatchesScalarReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const VectorOps* implementations[] = {&scalar_vector_ops(), &vector_ops()};
  for (const VectorOps* ops : implementations) {
    for (int64_t rank : {1, 3, 8, 16, 64}) {
      for (auto [in, out] : {std::pair<int64_t, int64_t>{1, 1}, {7, 13}, {37, 53}, {576, 192}, {1536, 577}}) {
        std::vector<uint16_t> a(static_cast<size_t>(rank * in)), b_t(static_cast<size_t>(rank * out));
        for (auto& v : a) v = float_to_f16(normal(rng) / std::sqrt(static_cast<float>(in)));
        for (auto& v : b_t) v = float_to_f16(normal(rng) * 0.1f);
        std::vector<float> x(static_cast<size_t>(in));
        for (auto& v : x) v = normal(rng);
        std::vector<float> y(static_cast<size_t>(out)), expected(y.size());
        for (size_t j = 0; j < y.size(); ++j) y[j] = expected[j] = normal(rng);
        const LoraWeights w{.a = a.data(), .b_t = b_t.data(), .rank = rank, .in = in, .out = out, .scale = 1.75f};
        std::vector<float> shrunk(static_cast<size_t>(rank));
        lora_add_row(*ops, w, x.data(), y.data(), shrunk.data());
        lora_add_row_reference(w, x.data(), expected.data());
        // F32 sums of `in` then `rank` terms against double: relative error ~ sqrt(in) x 2^-24 per term.
        for (size_t j = 0; j < y.size(); ++j) {
          ASSERT_NEAR(y[j], expected[j], 2e-5 * (1 + std::fabs(expected[j])) * std::sqrt(static_cast<float>(in * rank)))
              << "rank " << rank << " in " << in << " out " << out << " output " << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tern::kernels
