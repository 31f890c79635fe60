#include "util/sha256.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "util/mapped_file.h"

namespace tern {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  const std::string abc = "abc";
  EXPECT_EQ(sha256_hex({reinterpret_cast<const uint8_t*>(abc.data()), abc.size()}),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, FileMatchesBufferAndReportsProgress) {
  const std::string path = (std::filesystem::temp_directory_path() / "tern_sha256_test.bin").string();
  std::string content(3 << 20, 'x');
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(content.data(), 1, content.size(), f);
  std::fclose(f);
  uint64_t last_done = 0;
  auto hash = sha256_file_hex(path, [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, content.size());
    last_done = done;
  });
  ASSERT_TRUE(hash);
  EXPECT_EQ(*hash, sha256_hex({reinterpret_cast<const uint8_t*>(content.data()), content.size()}));
  EXPECT_EQ(last_done, content.size());
  auto mapped = MappedFile::open(path);
  ASSERT_TRUE(mapped);
  EXPECT_EQ(mapped->bytes().size(), content.size());
  std::filesystem::remove(path);
  EXPECT_FALSE(sha256_file_hex(path));
}

TEST(MappedFile, DirectoryIsAnError) {
  auto mapped = MappedFile::open("/");
  ASSERT_FALSE(mapped);
  EXPECT_NE(mapped.error().message.find("not a regular file"), std::string::npos);
}

}  // namespace
}  // namespace tern
