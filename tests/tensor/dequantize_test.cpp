#include "tensor/dequantize.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>

#include "gguf/gguf_file.h"
#include "tensor/half.h"
#include "test_support.h"
#include "util/sha256.h"

namespace tern {
namespace {

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

std::optional<DType> dtype_by_name(const std::string& name) {
  for (uint32_t id = 0; id < 64; ++id) {
    if (auto info = dtype_info(id); info && info->name == name) return info->type;
  }
  return std::nullopt;
}

TEST(DType, BlockGeometryMatchesTheGgufPackage) {
  const auto sizes = nlohmann::json::parse(testing::read_text(testing::data_path("dequant/type_sizes.json")));
  size_t checked = 0;
  for (const auto& [name, golden] : sizes.items()) {
    auto info = dtype_info(golden.at("id").get<uint32_t>());
    ASSERT_TRUE(info) << "tern does not know type " << name;
    EXPECT_EQ(info->name, name);
    EXPECT_EQ(info->block_size, golden.at("block_size").get<uint32_t>()) << name;
    EXPECT_EQ(info->block_bytes, golden.at("block_bytes").get<uint32_t>()) << name;
    ++checked;
  }
  EXPECT_GE(checked, 30u);
}

// Bit-exact: the reference decodes each block exactly as the gguf package's numpy code does.
TEST(Dequantize, RandomBlocksMatchTheGgufPackageBitForBit) {
  const auto goldens = nlohmann::json::parse(testing::read_text(testing::data_path("dequant/random_blocks.json")));
  size_t num_types = 0;
  for (const auto& c : goldens.at("cases")) {
    const std::string name = c.at("type");
    auto type = dtype_by_name(name);
    ASSERT_TRUE(type) << name;
    const auto bytes = from_hex(c.at("bytes_hex"));
    const auto expected_bits = from_hex(c.at("float_bits_hex"));
    std::vector<float> out(c.at("num_elements").get<size_t>());
    auto ok = dequantize(*type, bytes, out);
    ASSERT_TRUE(ok) << ok.error().message;
    ASSERT_EQ(expected_bits.size(), out.size() * 4);
    for (size_t i = 0; i < out.size(); ++i) {
      uint32_t expected;
      std::memcpy(&expected, expected_bits.data() + 4 * i, 4);
      ASSERT_EQ(std::bit_cast<uint32_t>(out[i]), expected) << name << " element " << i << ": got " << out[i]
                                                           << ", expected " << std::bit_cast<float>(expected);
    }
    ++num_types;
  }
  EXPECT_EQ(num_types, 13u);
}

TEST(Dequantize, RejectsWrongSizesAndUnsupportedTypes) {
  std::vector<uint8_t> bytes(18);
  std::vector<float> out(32);
  EXPECT_TRUE(dequantize(DType::Q4_0, bytes, out));
  std::vector<float> odd(31);
  EXPECT_FALSE(dequantize(DType::Q4_0, bytes, odd));
  std::vector<uint8_t> short_bytes(17);
  EXPECT_FALSE(dequantize(DType::Q4_0, short_bytes, out));
  auto unsupported = dequantize(DType::IQ4_NL, bytes, out);
  ASSERT_FALSE(unsupported);
  EXPECT_NE(unsupported.error().message.find("IQ4_NL"), std::string::npos);
}

TEST(Half, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    const float value = f16_to_float(static_cast<uint16_t>(bits));
    if (std::isnan(value)) continue;
    ASSERT_EQ(float_to_f16(value), bits) << "half 0x" << std::hex << bits;
  }
  EXPECT_EQ(f16_to_float(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(float_to_f16(65520.0f), 0x7C00);  // rounds to infinity
  EXPECT_EQ(float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // ties to even
  EXPECT_EQ(bf16_to_float(0x3F80), 1.0f);
}

// Every tensor of both real models, hashed after dequantization, against the gguf package.
TEST(Dequantize, EveryTensorOfTheRealModelsMatchesTheGgufPackage) {
  const auto goldens = nlohmann::json::parse(testing::read_text(testing::data_path("dequant/model_tensors.json")));
  for (const char* alias : {"smollm2-135m", "gemma3-270m"}) {
    TERN_REQUIRE_MODEL(path, alias);
    auto file = gguf::GgufFile::open(path);
    ASSERT_TRUE(file) << file.error().message;
    const auto& expected = goldens.at(models::find_in_catalog(alias)->file_name).at("tensors");
    std::vector<float> values;
    for (const gguf::TensorInfo& tensor : file->tensors()) {
      values.resize(tensor.num_elements);
      auto ok = dequantize(tensor.type, tensor.data, values);
      ASSERT_TRUE(ok) << tensor.name << ": " << ok.error().message;
      const std::string hash = sha256_hex({reinterpret_cast<const uint8_t*>(values.data()), values.size() * 4});
      EXPECT_EQ(hash, expected.at(std::string(tensor.name)).at("sha256").get<std::string>())
          << alias << " tensor " << tensor.name << " (" << dtype_info(tensor.type).name << ")";
    }
  }
}

}  // namespace
}  // namespace tern
