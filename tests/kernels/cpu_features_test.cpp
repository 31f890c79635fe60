// The ISA cap that lets one AVX-512 machine test the AVX2 and scalar dispatch paths (TERN_ISA).

#include "kernels/cpu/cpu_features.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace tern::kernels {
namespace {

TEST(CpuFeatures, ParsesIsaNames) {
  EXPECT_EQ(parse_isa("scalar"), Isa::SCALAR);
  EXPECT_EQ(parse_isa("avx2"), Isa::AVX2);
  EXPECT_EQ(parse_isa("avx512"), Isa::AVX512_VNNI);
  EXPECT_EQ(parse_isa("avx512-vnni"), Isa::AVX512_VNNI);
  EXPECT_EQ(parse_isa("AVX2"), std::nullopt);
  EXPECT_EQ(parse_isa("sse4"), std::nullopt);
  EXPECT_EQ(parse_isa(""), std::nullopt);
}

TEST(CpuFeatures, CapOnlyLowers) {
  EXPECT_EQ(cap_isa(Isa::AVX512_VNNI, Isa::AVX2), Isa::AVX2);
  EXPECT_EQ(cap_isa(Isa::AVX512_VNNI, Isa::SCALAR), Isa::SCALAR);
  EXPECT_EQ(cap_isa(Isa::AVX2, Isa::AVX512_VNNI), Isa::AVX2);  // never above the hardware
  EXPECT_EQ(cap_isa(Isa::SCALAR, Isa::AVX2), Isa::SCALAR);
}

// When CI runs the suite with TERN_ISA set, the kernels really are dispatched at or below that level:
// otherwise the "AVX2 run" would silently test AVX-512 again.
TEST(CpuFeatures, EnvironmentCapIsInForce) {
  std::printf("dispatching %s kernels (TERN_ISA=%s)\n", isa_name(best_isa()),
              std::getenv("TERN_ISA") ? std::getenv("TERN_ISA") : "unset");
  const char* wanted = std::getenv("TERN_ISA");
  if (wanted == nullptr) GTEST_SKIP() << "TERN_ISA not set";
  const std::optional<Isa> cap = parse_isa(wanted);
  ASSERT_TRUE(cap.has_value()) << "TERN_ISA=" << wanted << " is not a valid ISA name";
  EXPECT_LE(static_cast<int>(best_isa()), static_cast<int>(*cap));
}

}  // namespace
}  // namespace tern::kernels
