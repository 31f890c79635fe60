#include "util/sha256.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

namespace tern {
namespace {

struct DigestDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};
using Digest = std::unique_ptr<EVP_MD_CTX, DigestDeleter>;

Digest new_sha256() {
  Digest digest(EVP_MD_CTX_new());
  EVP_DigestInit_ex(digest.get(), EVP_sha256(), nullptr);
  return digest;
}

std::string finish_hex(EVP_MD_CTX* context) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context, out, &length);
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) hex += fmt::format("{:02x}", out[i]);
  return hex;
}

}  // namespace

std::string sha256_hex(std::span<const uint8_t> bytes) {
  Digest digest = new_sha256();
  EVP_DigestUpdate(digest.get(), bytes.data(), bytes.size());
  return finish_hex(digest.get());
}

Result<std::string> sha256_file_hex(const std::string& path,
                                    const std::function<void(uint64_t, uint64_t)>& on_progress) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) return fail("{}: cannot open: {}", path, std::strerror(errno));
  std::fseek(file.get(), 0, SEEK_END);
  const uint64_t total = static_cast<uint64_t>(std::ftell(file.get()));
  std::fseek(file.get(), 0, SEEK_SET);
  Digest digest = new_sha256();
  std::vector<unsigned char> buffer(1 << 20);
  uint64_t done = 0;
  size_t got = 0;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), file.get())) > 0) {
    EVP_DigestUpdate(digest.get(), buffer.data(), got);
    done += got;
    if (on_progress) on_progress(done, total);
  }
  if (std::ferror(file.get())) return fail("{}: read error", path);
  return finish_hex(digest.get());
}

}  // namespace tern
