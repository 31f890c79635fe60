#pragma once
// Reader for GGUF, the single-file model format of ggml / llama.cpp (versions 2 and 3, little-endian).
//
// Layout (all integers little-endian; "string" = u64 byte length + UTF-8 bytes, no terminator):
//
//   +--------------------------------------------------------------+
//   | magic "GGUF" (4 bytes) | version u32 | tensor_count u64 | kv_count u64 |
//   +--------------------------------------------------------------+
//   | kv_count metadata entries:  key string | value_type u32 | value        |
//   |   value_type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (1 byte),
//   |               8 string, 9 array, 10 u64, 11 i64, 12 f64
//   |   array value: element_type u32 | count u64 | count elements (arrays may nest)
//   +--------------------------------------------------------------+
//   | tensor_count tensor infos:  name string | n_dims u32 | n_dims x u64 dims |
//   |                             type u32 (ggml type id) | offset u64            |
//   |   dims[0] is the fastest-varying (row length); offset is relative to the data section
//   |   and a multiple of the alignment
//   +--------------------------------------------------------------+
//   | padding to a multiple of `general.alignment` (u32 metadata, default 32)
//   +--------------------------------------------------------------+
//   | data section: tensor bytes at their offsets, each padded to the alignment
//   +--------------------------------------------------------------+
//
// The reader is zero-copy: strings, numeric arrays and tensor data are views into the mapped file.
// Every count, length and offset comes from an untrusted file, so each is checked against the bytes
// that remain before anything is allocated or read; a bad file yields an Error naming the file and
// the problem, never a crash or an allocation whose size the file chooses.

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tensor/dtype.h"
#include "util/mapped_file.h"
#include "util/result.h"

namespace tern::gguf {

enum class ValueType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

/// Name of a metadata value type ("u32", "string", ...).
std::string_view value_type_name(ValueType type);

/// A metadata array. Numeric and bool elements stay packed in the file (`packed`); strings are views;
/// nested arrays are parsed recursively.
struct Array {
  ValueType element_type = ValueType::U8;
  uint64_t size = 0;
  std::span<const uint8_t> packed;         ///< numeric / bool elements, little-endian
  std::vector<std::string_view> strings;   ///< STRING elements
  std::vector<Array> arrays;               ///< ARRAY elements

  /// Element i of a numeric array converted to T (caller checks element_type).
  template <class T>
  T numeric_at(size_t i, size_t element_bytes) const {
    T value{};
    std::memcpy(&value, packed.data() + i * element_bytes, sizeof(T));
    return value;
  }
};

/// One metadata value.
class Value {
 public:
  using Storage = std::variant<uint64_t, int64_t, double, bool, std::string_view, Array>;
  Value(ValueType type, Storage storage) : type_(type), storage_(std::move(storage)) {}

  ValueType type() const { return type_; }
  /// Any integer type holding a non-negative value.
  std::optional<uint64_t> as_uint() const;
  /// Any integer type whose value fits int64.
  std::optional<int64_t> as_int() const;
  /// F32 or F64.
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;
  const Array* as_array() const { return std::get_if<Array>(&storage_); }

  /// Short human-readable rendering (arrays abbreviated), for `tern inspect`.
  std::string to_display_string(size_t max_chars = 80) const;

 private:
  ValueType type_;
  Storage storage_;
};

/// One tensor's description and a view of its bytes in the mapped file.
struct TensorInfo {
  std::string_view name;
  std::vector<uint64_t> shape;  ///< shape[0] is the row length (fastest-varying)
  DType type = DType::F32;
  uint64_t offset = 0;          ///< relative to the data section
  uint64_t num_elements = 0;
  std::span<const uint8_t> data;
};

class GgufFile {
 public:
  /// Maps and parses a file. Errors name the file.
  static Result<GgufFile> open(const std::string& path);
  /// Parses bytes owned by the caller (which must outlive the result); `name` is used in errors.
  static Result<GgufFile> parse(std::span<const uint8_t> bytes, std::string name);

  uint32_t version() const { return version_; }
  const std::string& name() const { return name_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_bytes() const { return bytes_.size(); }
  /// Whether the bytes are a read-only map of a file (opened with open(), not parse()).
  bool is_mapped() const { return file_ != nullptr; }

  const std::vector<std::pair<std::string_view, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;

  // Typed getters; a missing key or a wrong type is an Error naming the key.
  Result<uint64_t> get_uint(std::string_view key) const;
  Result<double> get_float(std::string_view key) const;
  Result<bool> get_bool(std::string_view key) const;
  Result<std::string_view> get_string(std::string_view key) const;
  Result<const Array*> get_array(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

 private:
  std::shared_ptr<MappedFile> file_;  // null when parsed from caller-owned bytes
  std::span<const uint8_t> bytes_;
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string_view, Value>> metadata_;
  std::vector<TensorInfo> tensors_;

  friend class Parser;
};

}  // namespace tern::gguf
