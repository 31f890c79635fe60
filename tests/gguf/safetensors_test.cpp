// The safetensors reader (PEFT adapters) on crafted files: a valid one read back exactly, and every
// lie a header can tell refused with an error that names it.

#include "gguf/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace tern::gguf {
namespace {

std::vector<uint8_t> file_with(const std::string& header, size_t data_bytes) {
  const uint64_t length = header.size();
  std::string bytes(reinterpret_cast<const char*>(&length), 8);
  bytes += header;
  for (size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<char>(i));
  return {bytes.begin(), bytes.end()};
}

std::string error_of(const std::vector<uint8_t>& bytes) {
  auto file = SafetensorsFile::parse(bytes, "x.safetensors");
  EXPECT_FALSE(file);
  return file ? std::string() : file.error().message;
}

TEST(Safetensors, ReadsTensorsInPlace) {
  const auto bytes = file_with(R"({"__metadata__": {"format": "pt"}, "w": {"dtype": "F16", "shape": [2, 3], "data_offsets": [4, 16]},
                                   "v": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                               16);
  auto file = SafetensorsFile::parse(bytes, "x.safetensors");
  ASSERT_TRUE(file) << file.error().message;
  ASSERT_EQ(file->tensors().size(), 2u);
  const SafeTensor& w = file->tensors().at("w");
  EXPECT_EQ(w.type, DType::F16);
  EXPECT_EQ(w.shape, (std::vector<uint64_t>{2, 3}));
  ASSERT_EQ(w.data.size(), 12u);
  EXPECT_EQ(w.data[0], 4);  // the data section's byte 4
}

TEST(Safetensors, RefusesWhatTheHeaderGetsWrong) {
  EXPECT_NE(error_of({1, 2, 3}).find("shorter than its header length"), std::string::npos);
  EXPECT_NE(error_of(std::vector<uint8_t>(12, 255)).find("does not fit the file"), std::string::npos);
  EXPECT_NE(error_of(file_with("[1, 2]", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(file_with("{\"w\": {\"dtype\": \"F16\"", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(file_with(R"({"w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}})", 8)).find("dtype I64"), std::string::npos);
  EXPECT_NE(error_of(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4)).find("outside the data section"),
            std::string::npos);
  EXPECT_NE(error_of(file_with(R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8)).find("its shape needs 12"),
            std::string::npos);
  EXPECT_NE(error_of(file_with(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 8]}})", 8)).find("bad shape"),
            std::string::npos);
  EXPECT_NE(error_of(file_with(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", 8))
                .find("too large"),
            std::string::npos);
  EXPECT_NE(error_of(file_with(R"({"w": {"dtype": "F32", "shape": [2]}})", 8)).find("lacks dtype, shape or data_offsets"),
            std::string::npos);
}

}  // namespace
}  // namespace tern::gguf
