#include "model/summary.h"

#include <algorithm>

namespace tern::models {

std::string format_count(uint64_t count) {
  if (count >= 1'000'000'000) return fmt::format("{:.2f}B", count / 1e9);
  if (count >= 1'000'000) return fmt::format("{:.1f}M", count / 1e6);
  if (count >= 1'000) return fmt::format("{:.1f}K", count / 1e3);
  return std::to_string(count);
}

std::string format_bytes(uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.2f} GiB", bytes / double(1ull << 30));
  if (bytes >= (1ull << 20)) return fmt::format("{:.1f} MiB", bytes / double(1ull << 20));
  if (bytes >= (1ull << 10)) return fmt::format("{:.1f} KiB", bytes / double(1ull << 10));
  return fmt::format("{} B", bytes);
}

namespace {

std::optional<uint64_t> optional_uint(const gguf::GgufFile& file, const std::string& key) {
  const gguf::Value* value = file.find(key);
  return value != nullptr ? value->as_uint() : std::nullopt;
}

std::string token_text(const gguf::Array* tokens, uint64_t id) {
  if (tokens == nullptr || id >= tokens->strings.size()) return "(out of range)";
  return std::string(tokens->strings[id]);
}

}  // namespace

ModelSummary summarize(const gguf::GgufFile& file) {
  ModelSummary s;
  s.path = file.name();
  s.gguf_version = file.version();
  s.file_bytes = file.file_bytes();
  if (auto arch = file.get_string("general.architecture")) s.architecture = *arch;
  if (auto name = file.get_string("general.name")) s.name = *name;

  std::map<std::string, TypeShare> mix;
  for (const gguf::TensorInfo& tensor : file.tensors()) {
    s.num_parameters += tensor.num_elements;
    s.weight_bytes += tensor.data.size();
    TypeShare& share = mix[std::string(dtype_info(tensor.type).name)];
    share.type = dtype_info(tensor.type).name;
    share.num_tensors += 1;
    share.num_elements += tensor.num_elements;
    share.bytes += tensor.data.size();
  }
  for (auto& [type, share] : mix) s.type_mix.push_back(share);
  std::sort(s.type_mix.begin(), s.type_mix.end(), [](const TypeShare& a, const TypeShare& b) { return a.bytes > b.bytes; });

  const std::string arch = s.architecture;
  s.context_length = optional_uint(file, arch + ".context_length");
  s.embedding_length = optional_uint(file, arch + ".embedding_length");
  s.num_layers = optional_uint(file, arch + ".block_count");
  s.num_heads = optional_uint(file, arch + ".attention.head_count");
  s.num_kv_heads = optional_uint(file, arch + ".attention.head_count_kv");
  if (!s.num_kv_heads) s.num_kv_heads = s.num_heads;
  std::optional<uint64_t> key_length = optional_uint(file, arch + ".attention.key_length");
  std::optional<uint64_t> value_length = optional_uint(file, arch + ".attention.value_length");
  if (s.embedding_length && s.num_heads && *s.num_heads > 0) {
    if (!key_length) key_length = *s.embedding_length / *s.num_heads;
    if (!value_length) value_length = key_length;
  }
  if (s.num_layers && s.num_kv_heads && key_length && value_length) {
    s.kv_bytes_per_token = *s.num_layers * *s.num_kv_heads * (*key_length + *value_length) * 2;
  }

  if (auto model = file.get_string("tokenizer.ggml.model")) s.tokenizer_model = *model;
  s.tokenizer_kind = s.tokenizer_model == "gpt2"    ? "byte-level BPE"
                     : s.tokenizer_model == "llama" ? "SentencePiece"
                                                    : s.tokenizer_model;
  if (auto pre = file.get_string("tokenizer.ggml.pre")) s.pre_tokenizer = *pre;
  const gguf::Array* tokens = nullptr;
  if (auto array = file.get_array("tokenizer.ggml.tokens")) {
    tokens = *array;
    s.vocab_size = tokens->size;
  }
  for (const char* role : {"bos", "eos", "eot", "eom", "unknown", "padding", "separator", "mask"}) {
    if (auto id = optional_uint(file, fmt::format("tokenizer.ggml.{}_token_id", role))) {
      s.special_tokens.push_back({role, *id, token_text(tokens, *id)});
    }
  }
  if (auto chat = file.get_string("tokenizer.chat_template")) s.chat_template = *chat;
  return s;
}

}  // namespace tern::models
