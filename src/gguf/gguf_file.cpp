#include "gguf/gguf_file.h"

#include <algorithm>
#include <limits>
#include <unordered_set>

namespace tern::gguf {
namespace {

constexpr uint32_t kMaxArrayDepth = 8;       // nested arrays deeper than this are rejected
constexpr uint32_t kMaxDims = 4;             // ggml tensors have at most 4 dimensions
constexpr uint64_t kMaxAlignment = 1 << 20;  // far above any real file (32)

size_t scalar_bytes(ValueType type) {
  switch (type) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
    case ValueType::ARRAY:
      return 0;
  }
  return 0;
}

bool is_known_value_type(uint32_t raw) { return raw <= static_cast<uint32_t>(ValueType::F64); }

}  // namespace

// Reads the header, metadata and tensor infos with a cursor that never passes the end.
class Parser {
 public:
  Parser(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  Result<void> run(GgufFile& out);

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  uint64_t pos_ = 0;

  uint64_t remaining() const { return bytes_.size() - pos_; }

  template <class... Args>
  std::unexpected<Error> error(fmt::format_string<Args...> format, Args&&... args) const {
    return fail("{}: {}", name_, fmt::format(format, std::forward<Args>(args)...));
  }

  template <class T>
  Result<T> read(std::string_view what) {
    if (remaining() < sizeof(T)) {
      return error("truncated: {} at byte {} needs {} bytes, {} remain", what, pos_, sizeof(T), remaining());
    }
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  Result<std::string_view> read_string(std::string_view what) {
    auto length = read<uint64_t>(what);
    if (!length) return std::unexpected(length.error());
    if (*length > remaining()) {
      return error("{} at byte {} claims {} bytes but only {} remain", what, pos_ - 8, *length, remaining());
    }
    std::string_view text(reinterpret_cast<const char*>(bytes_.data() + pos_), *length);
    pos_ += *length;
    return text;
  }

  Result<Value> read_value(ValueType type, std::string_view key, uint32_t depth);
  Result<Array> read_array(std::string_view key, uint32_t depth);
  Result<void> read_tensor_info(GgufFile& out, uint64_t index);
  Result<void> check_tensor_layout(GgufFile& out);
};

Result<Value> Parser::read_value(ValueType type, std::string_view key, uint32_t depth) {
  auto what = [&] { return fmt::format("value of '{}'", key); };
  switch (type) {
#define TERN_READ_SCALAR(ENUM, CTYPE, STORE)                     \
  case ValueType::ENUM: {                                        \
    auto v = read<CTYPE>(what());                                \
    if (!v) return std::unexpected(v.error());                   \
    return Value(type, static_cast<STORE>(*v));                  \
  }
    TERN_READ_SCALAR(U8, uint8_t, uint64_t)
    TERN_READ_SCALAR(U16, uint16_t, uint64_t)
    TERN_READ_SCALAR(U32, uint32_t, uint64_t)
    TERN_READ_SCALAR(U64, uint64_t, uint64_t)
    TERN_READ_SCALAR(I8, int8_t, int64_t)
    TERN_READ_SCALAR(I16, int16_t, int64_t)
    TERN_READ_SCALAR(I32, int32_t, int64_t)
    TERN_READ_SCALAR(I64, int64_t, int64_t)
    TERN_READ_SCALAR(F32, float, double)
    TERN_READ_SCALAR(F64, double, double)
#undef TERN_READ_SCALAR
    case ValueType::BOOL: {
      auto v = read<uint8_t>(what());
      if (!v) return std::unexpected(v.error());
      if (*v > 1) return error("value of '{}' is a bool stored as {}, not 0 or 1", key, *v);
      return Value(type, *v == 1);
    }
    case ValueType::STRING: {
      auto v = read_string(what());
      if (!v) return std::unexpected(v.error());
      return Value(type, *v);
    }
    case ValueType::ARRAY: {
      auto v = read_array(key, depth + 1);
      if (!v) return std::unexpected(v.error());
      return Value(type, std::move(*v));
    }
  }
  return error("value of '{}' has unknown type {}", key, static_cast<uint32_t>(type));
}

Result<Array> Parser::read_array(std::string_view key, uint32_t depth) {
  if (depth > kMaxArrayDepth) return error("array '{}' nests deeper than {} levels", key, kMaxArrayDepth);
  auto raw_type = read<uint32_t>(fmt::format("element type of array '{}'", key));
  if (!raw_type) return std::unexpected(raw_type.error());
  if (!is_known_value_type(*raw_type)) {
    return error("array '{}' has unknown element type {}", key, *raw_type);
  }
  auto count = read<uint64_t>(fmt::format("length of array '{}'", key));
  if (!count) return std::unexpected(count.error());

  Array array;
  array.element_type = static_cast<ValueType>(*raw_type);
  array.size = *count;
  // Every element takes at least `min_bytes` in the file, so a count the remaining bytes cannot hold
  // is rejected before anything is reserved.
  const size_t element_bytes = scalar_bytes(array.element_type);
  const uint64_t min_bytes = element_bytes != 0 ? element_bytes
                             : array.element_type == ValueType::STRING ? 8
                                                                         : 12;
  if (*count > remaining() / min_bytes) {
    return error("array '{}' claims {} elements but only {} bytes remain", key, *count, remaining());
  }
  if (element_bytes != 0) {
    array.packed = bytes_.subspan(pos_, *count * element_bytes);
    if (array.element_type == ValueType::BOOL) {
      for (uint8_t b : array.packed) {
        if (b > 1) return error("array '{}' holds a bool stored as {}", key, b);
      }
    }
    pos_ += *count * element_bytes;
  } else if (array.element_type == ValueType::STRING) {
    array.strings.reserve(*count);
    for (uint64_t i = 0; i < *count; ++i) {
      auto text = read_string(fmt::format("element {} of array '{}'", i, key));
      if (!text) return std::unexpected(text.error());
      array.strings.push_back(*text);
    }
  } else {
    array.arrays.reserve(*count);
    for (uint64_t i = 0; i < *count; ++i) {
      auto nested = read_array(key, depth + 1);
      if (!nested) return std::unexpected(nested.error());
      array.arrays.push_back(std::move(*nested));
    }
  }
  return array;
}

Result<void> Parser::read_tensor_info(GgufFile& out, uint64_t index) {
  auto name = read_string(fmt::format("name of tensor {}", index));
  if (!name) return std::unexpected(name.error());
  if (name->empty()) return error("tensor {} has an empty name", index);
  auto num_dims = read<uint32_t>(fmt::format("dimension count of tensor '{}'", *name));
  if (!num_dims) return std::unexpected(num_dims.error());
  if (*num_dims == 0 || *num_dims > kMaxDims) {
    return error("tensor '{}' has {} dimensions (1 to {} allowed)", *name, *num_dims, kMaxDims);
  }
  TensorInfo info;
  info.name = *name;
  info.num_elements = 1;
  for (uint32_t d = 0; d < *num_dims; ++d) {
    auto dim = read<uint64_t>(fmt::format("dimension {} of tensor '{}'", d, *name));
    if (!dim) return std::unexpected(dim.error());
    if (*dim == 0) return error("tensor '{}' has a zero-sized dimension {}", *name, d);
    if (__builtin_mul_overflow(info.num_elements, *dim, &info.num_elements) ||
        info.num_elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return error("tensor '{}' has an element count that overflows", *name);
    }
    info.shape.push_back(*dim);
  }
  auto raw_type = read<uint32_t>(fmt::format("type of tensor '{}'", *name));
  if (!raw_type) return std::unexpected(raw_type.error());
  auto type = dtype_info(*raw_type);
  if (!type) return error("tensor '{}' has unknown type id {}", *name, *raw_type);
  info.type = type->type;
  if (info.shape[0] % type->block_size != 0) {
    return error("tensor '{}' of type {} has rows of {} elements, not a multiple of the block size {}",
                 *name, type->name, info.shape[0], type->block_size);
  }
  auto offset = read<uint64_t>(fmt::format("offset of tensor '{}'", *name));
  if (!offset) return std::unexpected(offset.error());
  info.offset = *offset;
  out.tensors_.push_back(std::move(info));
  return {};
}

// Runs once the data section's start is known: each tensor must lie inside the file, aligned, and
// no two tensors may share bytes.
Result<void> Parser::check_tensor_layout(GgufFile& out) {
  const uint64_t data_bytes = bytes_.size() >= out.data_offset_ ? bytes_.size() - out.data_offset_ : 0;
  std::vector<std::pair<uint64_t, uint64_t>> extents;  // [begin, end) within the data section
  extents.reserve(out.tensors_.size());
  for (TensorInfo& info : out.tensors_) {
    const uint64_t size = dtype_bytes(dtype_info(info.type), info.num_elements);
    if (info.offset % out.alignment_ != 0) {
      return error("tensor '{}' starts at offset {}, not a multiple of the alignment {}", info.name,
                   info.offset, out.alignment_);
    }
    if (info.offset > data_bytes || size > data_bytes - info.offset) {
      return error("tensor '{}' ({} bytes at data offset {}) ends past the end of the file ({} data bytes)",
                   info.name, size, info.offset, data_bytes);
    }
    info.data = bytes_.subspan(out.data_offset_ + info.offset, size);
    extents.emplace_back(info.offset, info.offset + size);
  }
  std::vector<size_t> order(extents.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return extents[a] < extents[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& previous = extents[order[i - 1]];
    const auto& current = extents[order[i]];
    if (current.first < previous.second) {
      return error("tensors '{}' and '{}' overlap in the data section", out.tensors_[order[i - 1]].name,
                   out.tensors_[order[i]].name);
    }
  }
  return {};
}

Result<void> Parser::run(GgufFile& out) {
  if (bytes_.size() < 4 || std::memcmp(bytes_.data(), "GGUF", 4) != 0) {
    return error("not a GGUF file (bad magic; expected the bytes 'GGUF' at the start)");
  }
  pos_ = 4;
  auto version = read<uint32_t>("version");
  if (!version) return std::unexpected(version.error());
  if (*version == 1) return error("GGUF version 1 is obsolete and not supported; convert the model again");
  if (*version == 0x02000000 || *version == 0x03000000) {
    return error("big-endian GGUF files are not supported");
  }
  if (*version != 2 && *version != 3) return error("unsupported GGUF version {} (2 and 3 are)", *version);
  out.version_ = *version;

  auto tensor_count = read<uint64_t>("tensor count");
  if (!tensor_count) return std::unexpected(tensor_count.error());
  auto kv_count = read<uint64_t>("metadata count");
  if (!kv_count) return std::unexpected(kv_count.error());
  // Smallest possible entries: a metadata pair is 8 (key length) + 1 (key) + 4 (type) + 1 (u8);
  // a tensor info is 8 + 1 (name) + 4 + 8 (one dim) + 4 + 8.
  if (*kv_count > remaining() / 14) {
    return error("header claims {} metadata entries, more than the file's {} remaining bytes can hold",
                 *kv_count, remaining());
  }
  if (*tensor_count > remaining() / 33) {
    return error("header claims {} tensors, more than the file's {} remaining bytes can hold", *tensor_count,
                 remaining());
  }

  std::unordered_set<std::string_view> keys;
  out.metadata_.reserve(*kv_count);
  for (uint64_t i = 0; i < *kv_count; ++i) {
    auto key = read_string(fmt::format("key of metadata entry {}", i));
    if (!key) return std::unexpected(key.error());
    if (!keys.insert(*key).second) return error("metadata key '{}' appears twice", *key);
    auto raw_type = read<uint32_t>(fmt::format("type of metadata '{}'", *key));
    if (!raw_type) return std::unexpected(raw_type.error());
    if (!is_known_value_type(*raw_type)) return error("metadata '{}' has unknown type {}", *key, *raw_type);
    auto value = read_value(static_cast<ValueType>(*raw_type), *key, 0);
    if (!value) return std::unexpected(value.error());
    out.metadata_.emplace_back(*key, std::move(*value));
  }

  if (const Value* alignment = out.find("general.alignment")) {
    auto v = alignment->as_uint();
    if (alignment->type() != ValueType::U32 || !v || *v == 0 || (*v & (*v - 1)) != 0 || *v > kMaxAlignment) {
      return error("general.alignment must be a u32 power of two up to {}", kMaxAlignment);
    }
    out.alignment_ = *v;
  }

  std::unordered_set<std::string_view> names;
  out.tensors_.reserve(*tensor_count);
  for (uint64_t i = 0; i < *tensor_count; ++i) {
    auto ok = read_tensor_info(out, i);
    if (!ok) return ok;
    if (!names.insert(out.tensors_.back().name).second) {
      return error("tensor '{}' appears twice", out.tensors_.back().name);
    }
  }
  out.data_offset_ = (pos_ + out.alignment_ - 1) / out.alignment_ * out.alignment_;
  return check_tensor_layout(out);
}

Result<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes, std::string name) {
  GgufFile file;
  file.bytes_ = bytes;
  file.name_ = std::move(name);
  Parser parser(bytes, file.name_);
  auto ok = parser.run(file);
  if (!ok) return std::unexpected(ok.error());
  return file;
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return std::unexpected(mapped.error());
  auto shared = std::make_shared<MappedFile>(std::move(*mapped));
  auto file = parse(shared->bytes(), path);
  if (!file) return file;
  file->file_ = std::move(shared);
  return file;
}

const Value* GgufFile::find(std::string_view key) const {
  for (const auto& [name, value] : metadata_) {
    if (name == key) return &value;
  }
  return nullptr;
}

const TensorInfo* GgufFile::find_tensor(std::string_view name) const {
  for (const TensorInfo& info : tensors_) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

Result<uint64_t> GgufFile::get_uint(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail("{}: missing metadata '{}'", name_, key);
  if (auto v = value->as_uint()) return *v;
  return fail("{}: metadata '{}' is {}, expected a non-negative integer", name_, key,
              value_type_name(value->type()));
}

Result<double> GgufFile::get_float(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail("{}: missing metadata '{}'", name_, key);
  if (auto v = value->as_float()) return *v;
  return fail("{}: metadata '{}' is {}, expected a float", name_, key, value_type_name(value->type()));
}

Result<bool> GgufFile::get_bool(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail("{}: missing metadata '{}'", name_, key);
  if (auto v = value->as_bool()) return *v;
  return fail("{}: metadata '{}' is {}, expected a bool", name_, key, value_type_name(value->type()));
}

Result<std::string_view> GgufFile::get_string(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail("{}: missing metadata '{}'", name_, key);
  if (auto v = value->as_string()) return *v;
  return fail("{}: metadata '{}' is {}, expected a string", name_, key, value_type_name(value->type()));
}

Result<const Array*> GgufFile::get_array(std::string_view key) const {
  const Value* value = find(key);
  if (value == nullptr) return fail("{}: missing metadata '{}'", name_, key);
  if (const Array* v = value->as_array()) return v;
  return fail("{}: metadata '{}' is {}, expected an array", name_, key, value_type_name(value->type()));
}

}  // namespace tern::gguf
