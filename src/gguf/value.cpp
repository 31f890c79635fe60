#include <limits>

#include "gguf/gguf_file.h"

namespace tern::gguf {

std::string_view value_type_name(ValueType type) {
  switch (type) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::BOOL: return "bool";
    case ValueType::STRING: return "string";
    case ValueType::ARRAY: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "unknown";
}

std::optional<uint64_t> Value::as_uint() const {
  if (const auto* v = std::get_if<uint64_t>(&storage_)) return *v;
  if (const auto* v = std::get_if<int64_t>(&storage_); v != nullptr && *v >= 0) return static_cast<uint64_t>(*v);
  return std::nullopt;
}

std::optional<int64_t> Value::as_int() const {
  if (const auto* v = std::get_if<int64_t>(&storage_)) return *v;
  if (const auto* v = std::get_if<uint64_t>(&storage_);
      v != nullptr && *v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return static_cast<int64_t>(*v);
  }
  return std::nullopt;
}

std::optional<double> Value::as_float() const {
  if (const auto* v = std::get_if<double>(&storage_)) return *v;
  return std::nullopt;
}

std::optional<bool> Value::as_bool() const {
  if (const auto* v = std::get_if<bool>(&storage_)) return *v;
  return std::nullopt;
}

std::optional<std::string_view> Value::as_string() const {
  if (const auto* v = std::get_if<std::string_view>(&storage_)) return *v;
  return std::nullopt;
}

namespace {

std::string escape_and_clip(std::string_view text, size_t max_chars) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max_chars) {
      out += "...";
      break;
    }
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out;
}

}  // namespace

std::string Value::to_display_string(size_t max_chars) const {
  if (auto v = as_string()) return fmt::format("\"{}\"", escape_and_clip(*v, max_chars));  // (operator+ trips GCC's -Wrestrict)
  if (auto v = as_bool()) return *v ? "true" : "false";
  if (auto v = as_float()) return fmt::format("{:g}", *v);
  if (const auto* v = std::get_if<uint64_t>(&storage_)) return std::to_string(*v);
  if (const auto* v = std::get_if<int64_t>(&storage_)) return std::to_string(*v);
  const Array& array = std::get<Array>(storage_);
  std::string out = fmt::format("[{} x {}", array.size, value_type_name(array.element_type));
  if (!array.strings.empty()) {
    out += ": ";
    for (size_t i = 0; i < array.strings.size() && i < 4; ++i) {
      out += (i ? ", \"" : "\"") + escape_and_clip(array.strings[i], 16) + "\"";
    }
    if (array.strings.size() > 4) out += ", ...";
  }
  return out + "]";
}

}  // namespace tern::gguf
