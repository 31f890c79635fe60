#include "gguf/safetensors.h"

#include <cstring>
#include <nlohmann/json.hpp>

namespace tern::gguf {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

Result<DType> dtype_of(const std::string& name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  return fail("dtype {} (tern reads F32, F16 and BF16 adapters)", name);
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return std::unexpected(mapped.error());
  auto file = parse(mapped->bytes(), path);
  if (!file) return file;
  file->file_ = std::move(*mapped);  // the views stay valid: moving a map keeps its address
  return file;
}

Result<SafetensorsFile> SafetensorsFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.size() < 8) return fail("{}: not a safetensors file ({} bytes, shorter than its header length)", name, bytes.size());
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  if (header_bytes > kMaxHeaderBytes || header_bytes > bytes.size() - 8) {
    return fail("{}: header length {} does not fit the file ({} bytes)", name, header_bytes, bytes.size());
  }
  const auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_bytes), nullptr,
                                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return fail("{}: the header is not a JSON object", name);
  const std::span<const uint8_t> data = bytes.subspan(8 + header_bytes);
  SafetensorsFile out;
  out.name_ = name;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") continue;
    if (!entry.is_object() || !entry.contains("dtype") || !entry["dtype"].is_string() || !entry.contains("shape") ||
        !entry["shape"].is_array() || !entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2) {
      return fail("{}: tensor '{}' lacks dtype, shape or data_offsets", name, key);
    }
    auto type = dtype_of(entry["dtype"].get<std::string>());
    if (!type) return fail("{}: tensor '{}' has {}", name, key, type.error().message);
    SafeTensor tensor{.type = *type, .shape = {}, .data = {}};
    uint64_t count = 1;
    for (const auto& dim : entry["shape"]) {
      if (!dim.is_number_unsigned() || entry["shape"].size() > 8) return fail("{}: tensor '{}' has a bad shape", name, key);
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && count > (uint64_t{1} << 40) / d) return fail("{}: tensor '{}' is too large", name, key);
      count *= d;
      tensor.shape.push_back(d);
    }
    const auto& offsets = entry["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) return fail("{}: tensor '{}' has bad data_offsets", name, key);
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data.size()) {
      return fail("{}: tensor '{}' data [{}, {}) is outside the data section ({} bytes)", name, key, begin, end, data.size());
    }
    const uint64_t expected = count * dtype_info(*type).block_bytes;
    if (end - begin != expected) {
      return fail("{}: tensor '{}' has {} bytes of data but its shape needs {}", name, key, end - begin, expected);
    }
    tensor.data = data.subspan(begin, end - begin);
    out.tensors_.emplace(key, std::move(tensor));
  }
  return out;
}

}  // namespace tern::gguf
