#include "gguf/gguf_file.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "gguf_builder.h"
#include "test_support.h"

namespace tern::gguf {
namespace {

using testing::GgufBuilder;

Result<GgufFile> parse_bytes(const std::vector<uint8_t>& bytes) { return GgufFile::parse(bytes, "crafted.gguf"); }

std::string f32_data(size_t n) { return std::string(n * 4, '\0'); }

GgufBuilder minimal_valid() {
  GgufBuilder b;
  b.kv_string("general.architecture", "llama").kv_u32("llama.block_count", 2);
  b.tensor("a", {8}, 0, f32_data(8)).tensor("b", {4, 2}, 0, f32_data(8));
  return b;
}

TEST(GgufFile, ParsesAValidCraftedFile) {
  const auto bytes = minimal_valid().bytes();
  auto file = parse_bytes(bytes);
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(*file->get_string("general.architecture"), "llama");
  EXPECT_EQ(*file->get_uint("llama.block_count"), 2u);
  ASSERT_EQ(file->tensors().size(), 2u);
  EXPECT_EQ(file->tensors()[1].num_elements, 8u);
  EXPECT_EQ(file->tensors()[1].data.size(), 32u);
  EXPECT_EQ(file->data_offset() % 32, 0u);
}

TEST(GgufFile, TypedGettersNameTheKey) {
  const auto bytes = minimal_valid().bytes();
  auto file = parse_bytes(bytes);
  ASSERT_TRUE(file);
  auto missing = file->get_uint("no.such.key");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no.such.key"), std::string::npos);
  auto wrong = file->get_uint("general.architecture");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("string"), std::string::npos);
}

TEST(GgufFile, ReadsNestedArraysAndAllScalarTypes) {
  GgufBuilder b;
  for (uint32_t type : {0u, 1u}) b.kv("k8_" + std::to_string(type), type, std::string(1, '\x7f'));
  b.kv("k16", 3, GgufBuilder::pod<int16_t>(-5));
  b.kv("k64", 11, GgufBuilder::pod<int64_t>(-9));
  b.kv("f64", 12, GgufBuilder::pod<double>(2.5));
  // array of 2 arrays of u16
  std::string inner = GgufBuilder::pod<uint32_t>(2) + GgufBuilder::pod<uint64_t>(2) + GgufBuilder::pod<uint16_t>(1) +
                      GgufBuilder::pod<uint16_t>(2);
  b.kv("nested", 9, GgufBuilder::pod<uint32_t>(9) + GgufBuilder::pod<uint64_t>(2) + inner + inner);
  const auto bytes = b.bytes();
  auto file = parse_bytes(bytes);
  ASSERT_TRUE(file) << file.error().message;
  EXPECT_EQ(*file->find("k16")->as_int(), -5);
  EXPECT_FALSE(file->find("k64")->as_uint());
  EXPECT_EQ(*file->get_float("f64"), 2.5);
  const Array* nested = *file->get_array("nested");
  ASSERT_EQ(nested->arrays.size(), 2u);
  EXPECT_EQ(nested->arrays[1].numeric_at<uint16_t>(1, 2), 2);
}

struct BadCase {
  const char* name;
  std::vector<uint8_t> bytes;
  const char* expected;  // substring of the error
};

std::vector<uint8_t> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::vector<BadCase> bad_cases() {
  std::vector<BadCase> cases;
  const std::string valid = minimal_valid().build();
  cases.push_back({"empty", {}, "bad magic"});
  cases.push_back({"bad magic", to_bytes("GGUX" + valid.substr(4)), "bad magic"});
  cases.push_back({"version 1", to_bytes(GgufBuilder(1).build()), "version 1"});
  cases.push_back({"version 99", to_bytes(GgufBuilder(99).build()), "unsupported GGUF version 99"});
  cases.push_back({"big endian", to_bytes(GgufBuilder(0x03000000).build()), "big-endian"});
  for (size_t cut : {5ul, 9ul, 20ul, 30ul, 60ul, 100ul, valid.size() - 1}) {
    cases.push_back({"truncated", to_bytes(valid.substr(0, cut)), ""});
  }
  std::string huge_kv = "GGUF" + GgufBuilder::pod<uint32_t>(3) + GgufBuilder::pod<uint64_t>(0) +
                        GgufBuilder::pod<uint64_t>(~0ull);
  cases.push_back({"absurd metadata count", to_bytes(huge_kv), "metadata entries"});
  std::string huge_tensors = "GGUF" + GgufBuilder::pod<uint32_t>(3) + GgufBuilder::pod<uint64_t>(1ull << 60) +
                             GgufBuilder::pod<uint64_t>(0);
  cases.push_back({"absurd tensor count", to_bytes(huge_tensors), "tensors"});
  cases.push_back({"string past end", to_bytes(GgufBuilder().kv("k", 8, GgufBuilder::pod<uint64_t>(1ull << 40)).build()),
                   "claims"});
  cases.push_back({"key past end", to_bytes("GGUF" + GgufBuilder::pod<uint32_t>(3) + GgufBuilder::pod<uint64_t>(0) +
                                            GgufBuilder::pod<uint64_t>(1) + GgufBuilder::pod<uint64_t>(~0ull)),
                   "claims"});
  cases.push_back({"absurd array length",
                   to_bytes(GgufBuilder().kv("k", 9, GgufBuilder::pod<uint32_t>(4) + GgufBuilder::pod<uint64_t>(1ull << 62)).build()),
                   "elements"});
  cases.push_back({"unknown value type", to_bytes(GgufBuilder().kv("k", 77, "").build()), "unknown type 77"});
  cases.push_back({"unknown array element type",
                   to_bytes(GgufBuilder().kv("k", 9, GgufBuilder::pod<uint32_t>(13) + GgufBuilder::pod<uint64_t>(0)).build()),
                   "unknown element type"});
  cases.push_back({"bad bool", to_bytes(GgufBuilder().kv("k", 7, std::string(1, 2)).build()), "bool"});
  {
    std::string deep = GgufBuilder::pod<uint32_t>(4) + GgufBuilder::pod<uint64_t>(0);
    for (int i = 0; i < 20; ++i) deep = GgufBuilder::pod<uint32_t>(9) + GgufBuilder::pod<uint64_t>(1) + deep;
    cases.push_back({"deep nesting", to_bytes(GgufBuilder().kv("k", 9, deep).build()), "nests deeper"});
  }
  cases.push_back({"duplicate key", to_bytes(GgufBuilder().kv_u32("k", 1).kv_u32("k", 2).build()), "appears twice"});
  cases.push_back({"bad alignment", to_bytes(GgufBuilder().kv_u32("general.alignment", 3).build()), "alignment"});
  cases.push_back({"unknown tensor type", to_bytes(GgufBuilder().tensor("t", {32}, 250, f32_data(8)).build()),
                   "unknown type id 250"});
  cases.push_back({"too many dims", to_bytes(GgufBuilder().tensor("t", {1, 1, 1, 1, 1}, 0, f32_data(1)).build()),
                   "dimensions"});
  cases.push_back({"zero dim", to_bytes(GgufBuilder().tensor("t", {0}, 0, "").build()), "zero-sized"});
  cases.push_back({"element overflow",
                   to_bytes(GgufBuilder().tensor("t", {1ull << 40, 1ull << 40}, 0, f32_data(1)).build()), "overflows"});
  cases.push_back({"partial block", to_bytes(GgufBuilder().tensor("t", {33}, 2, std::string(36, '\0')).build()),
                   "block size"});
  cases.push_back({"tensor past end", to_bytes(GgufBuilder().tensor("t", {8}, 0, f32_data(8), 1 << 20).build().substr(0, 200)),
                   "past the end"});
  cases.push_back({"misaligned offset", to_bytes(GgufBuilder().tensor("t", {8}, 0, f32_data(8), 4).build()),
                   "alignment"});
  cases.push_back({"overlapping tensors",
                   to_bytes(GgufBuilder().tensor("a", {16}, 0, f32_data(16), 0).tensor("b", {8}, 0, f32_data(8), 32).build()),
                   "overlap"});
  cases.push_back({"duplicate tensor",
                   to_bytes(GgufBuilder().tensor("a", {8}, 0, f32_data(8)).tensor("a", {8}, 0, f32_data(8)).build()),
                   "appears twice"});
  cases.push_back({"empty tensor name", to_bytes(GgufBuilder().tensor("", {8}, 0, f32_data(8)).build()), "empty name"});
  return cases;
}

TEST(GgufFile, RejectsHostileFilesWithAClearError) {
  for (const BadCase& bad : bad_cases()) {
    auto file = parse_bytes(bad.bytes);
    ASSERT_FALSE(file) << bad.name << " was accepted";
    EXPECT_NE(file.error().message.find("crafted.gguf"), std::string::npos) << bad.name << ": " << file.error().message;
    EXPECT_NE(file.error().message.find(bad.expected), std::string::npos)
        << bad.name << ": '" << file.error().message << "' lacks '" << bad.expected << "'";
  }
}

TEST(GgufFile, MissingFileErrorNamesThePath) {
  auto file = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(file);
  EXPECT_NE(file.error().message.find("/nonexistent/model.gguf"), std::string::npos);
}

// The tensor table of both real models, as the gguf Python package read it (tools/make_dequant_goldens.py).
TEST(GgufFile, RealModelsMatchTheReferenceReader) {
  const auto goldens = nlohmann::json::parse(testing::read_text(testing::data_path("dequant/model_tensors.json")));
  for (const char* alias : {"smollm2-135m", "gemma3-270m"}) {
    TERN_REQUIRE_MODEL(path, alias);
    auto file = GgufFile::open(path);
    ASSERT_TRUE(file) << file.error().message;
    const auto& expected = goldens.at(models::find_in_catalog(alias)->file_name).at("tensors");
    ASSERT_EQ(file->tensors().size(), expected.size()) << alias;
    for (const TensorInfo& tensor : file->tensors()) {
      const auto& golden = expected.at(std::string(tensor.name));
      EXPECT_EQ(dtype_info(tensor.type).name, golden.at("type").get<std::string>()) << tensor.name;
      EXPECT_EQ(tensor.num_elements, golden.at("num_elements").get<uint64_t>()) << tensor.name;
    }
  }
}

}  // namespace
}  // namespace tern::gguf
