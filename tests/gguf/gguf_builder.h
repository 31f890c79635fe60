#pragma once
// Writes GGUF bytes in memory, so tests and the fuzzer can craft valid and broken files.

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace tern::testing {

class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version = 3) : version_(version) {}

  GgufBuilder& kv_u32(const std::string& key, uint32_t value) { return kv(key, 4, pod(value)); }
  GgufBuilder& kv_f32(const std::string& key, float value) { return kv(key, 6, pod(value)); }
  GgufBuilder& kv_bool(const std::string& key, bool value) { return kv(key, 7, std::string(1, value ? 1 : 0)); }
  GgufBuilder& kv_string(const std::string& key, const std::string& value) { return kv(key, 8, str(value)); }
  GgufBuilder& kv_string_array(const std::string& key, const std::vector<std::string>& values) {
    std::string body = pod<uint32_t>(8) + pod<uint64_t>(values.size());
    for (const std::string& v : values) body += str(v);
    return kv(key, 9, body);
  }
  GgufBuilder& kv_i32_array(const std::string& key, const std::vector<int32_t>& values) {
    std::string body = pod<uint32_t>(5) + pod<uint64_t>(values.size());
    for (int32_t v : values) body += pod(v);
    return kv(key, 9, body);
  }
  GgufBuilder& kv_f32_array(const std::string& key, const std::vector<float>& values) {
    std::string body = pod<uint32_t>(6) + pod<uint64_t>(values.size());
    for (float v : values) body += pod(v);
    return kv(key, 9, body);
  }
  /// A raw metadata entry: key, type id, already-encoded value bytes.
  GgufBuilder& kv(const std::string& key, uint32_t type, const std::string& value_bytes) {
    metadata_ += str(key) + pod(type) + value_bytes;
    ++num_kv_;
    return *this;
  }
  /// A tensor whose data is `data` (placed at the next aligned offset unless `offset` is given).
  GgufBuilder& tensor(const std::string& name, const std::vector<uint64_t>& shape, uint32_t type,
                      const std::string& data, int64_t offset = -1) {
    const uint64_t at = offset >= 0 ? static_cast<uint64_t>(offset) : aligned(data_.size());
    infos_ += str(name) + pod<uint32_t>(static_cast<uint32_t>(shape.size()));
    for (uint64_t d : shape) infos_ += pod(d);
    infos_ += pod(type) + pod(at);
    if (data_.size() < at + data.size()) data_.resize(at + data.size(), '\0');
    std::memcpy(data_.data() + at, data.data(), data.size());
    ++num_tensors_;
    return *this;
  }

  std::string build() const {
    std::string out = "GGUF" + pod(version_) + pod(num_tensors_) + pod(num_kv_) + metadata_ + infos_;
    out.resize(aligned(out.size()), '\0');
    return out + data_;
  }
  std::vector<uint8_t> bytes() const {
    const std::string s = build();
    return {s.begin(), s.end()};
  }

  template <class T>
  static std::string pod(T value) {
    std::string out(sizeof(T), '\0');
    std::memcpy(out.data(), &value, sizeof(T));
    return out;
  }
  static std::string str(const std::string& s) { return pod<uint64_t>(s.size()) + s; }

 private:
  static uint64_t aligned(uint64_t n) { return (n + 31) / 32 * 32; }
  uint32_t version_;
  uint64_t num_kv_ = 0;
  uint64_t num_tensors_ = 0;
  std::string metadata_;
  std::string infos_;
  std::string data_;
};

}  // namespace tern::testing
