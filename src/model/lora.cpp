#include "model/lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "gguf/gguf_file.h"
#include "gguf/safetensors.h"
#include "tensor/dequantize.h"
#include "tensor/half.h"
#include "util/sha256.h"

namespace tern::model {
namespace {

namespace fs = std::filesystem;

struct TargetName {
  LoraTarget target;
  const char* gguf;  ///< llama.cpp's tensor name part
  const char* peft;  ///< the Hugging Face module path after "layers.N."
};
constexpr TargetName kTargets[kNumLoraTargets] = {
    {LoraTarget::kQ, "attn_q", "self_attn.q_proj"},      {LoraTarget::kK, "attn_k", "self_attn.k_proj"},
    {LoraTarget::kV, "attn_v", "self_attn.v_proj"},      {LoraTarget::kO, "attn_output", "self_attn.o_proj"},
    {LoraTarget::kGate, "ffn_gate", "mlp.gate_proj"},    {LoraTarget::kUp, "ffn_up", "mlp.up_proj"},
    {LoraTarget::kDown, "ffn_down", "mlp.down_proj"},
};
constexpr const char* kSupported = "attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down (Phi-3: attn_qkv)";

/// The base matrix's input and output sizes.
std::pair<int64_t, int64_t> target_shape(const ModelConfig& c, LoraTarget t) {
  switch (t) {
    case LoraTarget::kQ: return {c.embedding_length, c.q_width()};
    case LoraTarget::kK: return {c.embedding_length, c.kv_width()};
    case LoraTarget::kV: return {c.embedding_length, c.v_width()};
    case LoraTarget::kO: return {c.num_heads * c.value_dim, c.embedding_length};
    case LoraTarget::kGate:
    case LoraTarget::kUp: return {c.embedding_length, c.ffn_length};
    case LoraTarget::kDown: return {c.ffn_length, c.embedding_length};
  }
  return {0, 0};
}

/// One matrix pair as read from a file, before conversion: A [rank][in], B [out][rank], floats.
struct Pair {
  std::vector<float> a, b;
  int64_t rank = 0, in = 0, out = 0;
  float alpha = 0;  ///< PEFT: per-module alpha; GGUF: the file's
};

std::string digest_of(const std::string& text) {
  return sha256_hex({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

Result<std::vector<float>> to_floats(DType type, std::span<const uint8_t> bytes, uint64_t count, const std::string& what) {
  std::vector<float> values(count);
  auto ok = dequantize(type, bytes, values);
  if (!ok) return fail("{}: {}", what, ok.error().message);
  for (float v : values) {
    if (!std::isfinite(v) || std::fabs(v) > 65504.0f) return fail("{}: value {} is not finite or outside F16's range", what, v);
  }
  return values;
}

/// The layer and target index of "<prefix><layer>.<name><suffix>" ("blk.3.attn_q.weight",
/// "layers.3.self_attn.q_proj"), `name_of` picking the format's name of each target; {-1, -1} if none.
std::pair<int64_t, int> find_target(const std::string& text, const char* prefix, const char* TargetName::*name_of, const char* suffix) {
  for (int i = 0; i < kNumLoraTargets; ++i) {
    int consumed = 0;
    long long layer = -1;
    const std::string pattern = std::string(prefix) + "%lld." + kTargets[i].*name_of + suffix + "%n";
    if (std::sscanf(text.c_str(), pattern.c_str(), &layer, &consumed) == 1 && consumed == static_cast<int>(text.size())) {
      return {layer, i};
    }
  }
  return {-1, -1};
}

/// One half of a pair as a file holds it, `rows` x `cols` row-major: A is [rank][in], B [out][rank].
Result<void> add_half(Pair& pair, bool is_a, uint64_t rows, uint64_t cols, float alpha, DType type, std::span<const uint8_t> data,
                      const std::string& path, const std::string& name, std::string_view layout_hint) {
  pair.alpha = alpha;
  const auto rank = static_cast<int64_t>(is_a ? rows : cols);
  if (pair.rank != 0 && pair.rank != rank) return fail("{}: '{}' has rank {} but its pair has {}{}", path, name, rank, pair.rank, layout_hint);
  pair.rank = rank;
  auto values = to_floats(type, data, rows * cols, fmt::format("{}: tensor '{}'", path, name));
  if (!values) return std::unexpected(values.error());
  if (is_a) pair.a = std::move(*values), pair.in = static_cast<int64_t>(cols);
  else pair.b = std::move(*values), pair.out = static_cast<int64_t>(rows);
  return {};
}

/// Hugging Face's q/k row order to llama.cpp's for the llama architecture: within each head, row
/// j * (head_dim / 2) + t (j in {0, 1}) becomes row 2t + j (convert_hf_to_gguf.py's permute).
void permute_rows_for_rope(std::vector<float>& b, int64_t rank, int64_t num_heads, int64_t head_dim) {
  std::vector<float> out(b.size());
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    for (int64_t j = 0; j < 2; ++j) {
      for (int64_t t = 0; t < half; ++t) {
        const int64_t from = h * head_dim + j * half + t, to = h * head_dim + 2 * t + j;
        std::copy_n(b.begin() + from * rank, rank, out.begin() + to * rank);
      }
    }
  }
  b.swap(out);
}

/// Phi-3's fused matrices: an adapter of attn_qkv (pair index kFusedQkv) is one of q, k and v each, and
/// one of ffn_up (gate rows, then up rows) one of gate and up each, sharing A: B's rows are split as
/// the base matrix's are (model/weights.cpp).
constexpr int kFusedQkv = kNumLoraTargets;

void split_fused_pairs(std::map<std::pair<int64_t, int>, Pair>& pairs, const ModelConfig& c) {
  if (!c.fused_qkv) return;
  auto split = [&](std::pair<int64_t, int> key, std::initializer_list<std::pair<LoraTarget, int64_t>> parts) {
    const Pair whole = pairs.at(key);
    pairs.erase(key);
    int64_t first = 0;
    for (auto [target, rows] : parts) {
      Pair part = whole;
      part.out = rows;
      part.b.assign(whole.b.begin() + std::min<int64_t>(first * whole.rank, static_cast<int64_t>(whole.b.size())),
                    whole.b.begin() + std::min<int64_t>((first + rows) * whole.rank, static_cast<int64_t>(whole.b.size())));
      pairs[{key.first, static_cast<int>(target)}] = std::move(part);
      first += rows;
    }
  };
  // Pairs of another width are left whole: assemble names them with the base matrix's shape.
  std::vector<std::pair<int64_t, int>> qkv, gate_up;
  for (const auto& [key, pair] : pairs) {
    if (key.second == kFusedQkv && pair.out == c.q_width() + c.kv_width() + c.v_width()) qkv.push_back(key);
    if (key.second == static_cast<int>(LoraTarget::kUp) && pair.out == 2 * c.ffn_length) gate_up.push_back(key);
  }
  for (const auto& key : qkv) split(key, {{LoraTarget::kQ, c.q_width()}, {LoraTarget::kK, c.kv_width()}, {LoraTarget::kV, c.v_width()}});
  for (const auto& key : gate_up) split(key, {{LoraTarget::kGate, c.ffn_length}, {LoraTarget::kUp, c.ffn_length}});
}

/// Checks every pair against the base model and stores it as options.weight_type (B transposed).
Result<std::shared_ptr<const LoraAdapter>> assemble(std::map<std::pair<int64_t, int>, Pair> pairs, const ModelConfig& config,
                                                    const LoraLoadOptions& options, LoraAdapter adapter, bool scale_by_rank,
                                                    bool rslora) {
  if (pairs.empty()) return fail("{}: no LoRA tensors (for {})", adapter.path, kSupported);
  split_fused_pairs(pairs, config);
  adapter.layers.resize(static_cast<size_t>(config.num_layers));
  for (auto& [key, pair] : pairs) {
    const auto [layer, target_index] = key;
    if (target_index == kFusedQkv) {
      return fail("{}: blk.{}.attn_qkv adapts a [{} -> {}] matrix but the base model's is [{} -> {}]", adapter.path, layer, pair.in,
                  pair.out, config.embedding_length, config.q_width() + config.kv_width() + config.v_width());
    }
    const TargetName& target = kTargets[target_index];
    const std::string what = fmt::format("{}: blk.{}.{}", adapter.path, layer, target.gguf);
    if (layer < 0 || layer >= config.num_layers) return fail("{}: layer {} but the base model has {}", what, layer, config.num_layers);
    if (pair.a.empty() || pair.b.empty()) return fail("{}: has only one of lora_a / lora_b", what);
    const bool is_ffn = target.target == LoraTarget::kGate || target.target == LoraTarget::kUp || target.target == LoraTarget::kDown;
    if (is_ffn && config.is_moe()) {
      return fail("{}: the base model's feed-forward is a mixture of experts, which tern does not adapt (attention only)", what);
    }
    const auto [in, out] = target_shape(config, target.target);
    if (pair.in != in || pair.out != out) {
      return fail("{}: adapts a [{} -> {}] matrix but the base model's is [{} -> {}] (an adapter for another model?)", what,
                  pair.in, pair.out, in, out);
    }
    if (pair.rank <= 0) return fail("{}: rank 0", what);
    if (options.max_rank > 0 && pair.rank > options.max_rank) {
      return fail("{}: rank {} is above the server's --max-lora-rank {}", what, pair.rank, options.max_rank);
    }
    float scale = options.scale;
    if (pair.alpha != 0 || scale_by_rank) {
      scale *= pair.alpha / (rslora ? std::sqrt(static_cast<float>(pair.rank)) : static_cast<float>(pair.rank));
    }
    backend::LoraMatrix& m = adapter.layers[static_cast<size_t>(layer)][static_cast<size_t>(target_index)];
    m.rank = pair.rank;
    m.in = in;
    m.out = out;
    m.scale = scale;
    std::vector<float> b_t(pair.b.size());
    for (int64_t j = 0; j < out; ++j) {
      for (int64_t r = 0; r < pair.rank; ++r) b_t[static_cast<size_t>(r * out + j)] = pair.b[static_cast<size_t>(j * pair.rank + r)];
    }
    m.set_weights(options.weight_type, pair.a, b_t);
    adapter.bytes += m.bytes();
    if (pair.rank >= adapter.max_rank) {
      adapter.max_rank = pair.rank;
      adapter.scale = scale;
    }
  }
  return std::make_shared<const LoraAdapter>(std::move(adapter));
}

// ---- llama.cpp's GGUF LoRA -----------------------------------------------------------------------

Result<std::shared_ptr<const LoraAdapter>> load_gguf(const std::string& path, const ModelConfig& config,
                                                     const LoraLoadOptions& options) {
  auto file = gguf::GgufFile::open(path);
  if (!file) return std::unexpected(file.error());
  auto type = file->get_string("general.type");
  if (!type || *type != "adapter") {
    return fail("{} is not a LoRA adapter (general.type is {}, not 'adapter')", path, type ? std::string(*type) : "missing");
  }
  auto adapter_type = file->get_string("adapter.type");
  if (!adapter_type || *adapter_type != "lora") {
    return fail("{}: adapter.type is {}; tern reads LoRA adapters ('lora')", path, adapter_type ? std::string(*adapter_type) : "missing");
  }
  auto arch = file->get_string("general.architecture");
  if (!arch || *arch != config.arch_name) {
    return fail("{} is an adapter for architecture '{}' but the base model is '{}'", path, arch ? std::string(*arch) : "?",
                config.arch_name);
  }
  auto alpha_value = file->get_float("adapter.lora.alpha");
  const float alpha = alpha_value ? static_cast<float>(*alpha_value) : 0.0f;

  std::map<std::pair<int64_t, int>, Pair> pairs;
  for (const gguf::TensorInfo& t : file->tensors()) {
    const std::string name(t.name);
    const bool is_a = name.ends_with(".lora_a"), is_b = name.ends_with(".lora_b");
    if (!is_a && !is_b) return fail("{}: tensor '{}' is not a LoRA tensor (.lora_a / .lora_b)", path, name);
    const std::string base = name.substr(0, name.size() - 7);
    auto [layer, target_index] = find_target(base, "blk.", &TargetName::gguf, ".weight");
    if (target_index < 0 && config.fused_qkv) {
      long long fused_layer = -1;
      int consumed = 0;
      if (std::sscanf(base.c_str(), "blk.%lld.attn_qkv.weight%n", &fused_layer, &consumed) == 1 &&
          consumed == static_cast<int>(base.size())) {
        layer = fused_layer, target_index = kFusedQkv;
      }
    }
    if (target_index < 0) return fail("{}: tensor '{}' adapts '{}'; tern adapts only {}", path, name, base, kSupported);
    std::vector<uint64_t> shape = t.shape;
    while (shape.size() > 2 && shape.back() == 1) shape.pop_back();
    if (shape.size() != 2) return fail("{}: tensor '{}' is not a matrix", path, name);
    // ggml's shape is [row length, rows].
    if (auto ok = add_half(pairs[{layer, target_index}], is_a, shape[1], shape[0], alpha, t.type, t.data, path, name,
                           " (lora_a is [in, rank], lora_b [rank, out])");
        !ok) {
      return std::unexpected(ok.error());
    }
  }
  auto digest = sha256_file_hex(path);
  if (!digest) return std::unexpected(digest.error());
  LoraAdapter adapter;
  adapter.path = path;
  adapter.format = "gguf";
  adapter.alpha = alpha;
  adapter.identity = digest_of(fmt::format("{}:{}", *digest, options.scale));
  return assemble(std::move(pairs), config, options, std::move(adapter), /*scale_by_rank=*/false, /*rslora=*/false);
}

// ---- PEFT directories ---------------------------------------------------------------------------

Result<std::shared_ptr<const LoraAdapter>> load_peft(const fs::path& dir, const ModelConfig& config, const LoraLoadOptions& options) {
  const fs::path config_path = dir / "adapter_config.json", weights_path = dir / "adapter_model.safetensors";
  std::ifstream in(config_path);
  if (!in) return fail("{}: no adapter_config.json (a PEFT adapter directory has one)", dir.string());
  const auto peft = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (peft.is_discarded() || !peft.is_object()) return fail("{}: not valid JSON", config_path.string());
  auto get = [&](const char* key) { return peft.contains(key) ? peft[key] : nlohmann::json(); };
  if (get("peft_type").is_string() && get("peft_type") != "LORA") return fail("{}: peft_type {} is not LORA", config_path.string(), get("peft_type").dump());
  if (!get("r").is_number_integer() || get("r").get<int64_t>() <= 0) return fail("{}: 'r' (the rank) is missing or not a positive integer", config_path.string());
  if (!get("lora_alpha").is_number()) return fail("{}: 'lora_alpha' is missing or not a number", config_path.string());
  if (get("use_dora") == true) return fail("{}: DoRA adapters (use_dora) are not supported", config_path.string());
  if (get("fan_in_fan_out") == true) return fail("{}: fan_in_fan_out adapters (GPT-2 style Conv1D) are not supported", config_path.string());
  if (get("bias").is_string() && get("bias") != "none") return fail("{}: bias '{}' is not supported (only 'none')", config_path.string(), get("bias").get<std::string>());
  if (get("modules_to_save").is_array() && !get("modules_to_save").empty()) {
    return fail("{}: modules_to_save (fully trained modules) are not supported", config_path.string());
  }
  if (get("alpha_pattern").is_object() && !get("alpha_pattern").empty()) return fail("{}: alpha_pattern is not supported", config_path.string());
  const float alpha = get("lora_alpha").get<float>();
  const bool rslora = get("use_rslora") == true;

  auto file = gguf::SafetensorsFile::open(weights_path.string());
  if (!file) return std::unexpected(file.error());
  std::map<std::pair<int64_t, int>, Pair> pairs;
  for (const auto& [name, t] : file->tensors()) {
    const bool is_a = name.ends_with(".lora_A.weight"), is_b = name.ends_with(".lora_B.weight");
    const size_t at = name.find("layers.");
    const auto [layer, target_index] = (is_a || is_b) && at != std::string::npos
                                           // "layers.N.self_attn.q_proj", without ".lora_A.weight"
                                           ? find_target(name.substr(at, name.size() - at - 14), "layers.", &TargetName::peft, "")
                                           : std::pair<int64_t, int>{-1, -1};
    if (target_index < 0) {
      return fail("{}: tensor '{}' is not a LoRA matrix of a module tern adapts (q/k/v/o_proj, gate/up/down_proj)",
                  weights_path.string(), name);
    }
    if (t.shape.size() != 2) return fail("{}: tensor '{}' is not a matrix", weights_path.string(), name);
    // PyTorch's shape is [rows, row length].
    if (auto ok = add_half(pairs[{layer, target_index}], is_a, t.shape[0], t.shape[1], alpha, t.type, t.data, weights_path.string(),
                           name, "");
        !ok) {
      return std::unexpected(ok.error());
    }
  }
  // HF checkpoints of NORM-RoPE models hold q and k in the NeoX order the GGUF converter permutes away.
  if (config.rope_style == backend::RopeStyle::NORM) {
    for (auto& [key, pair] : pairs) {
      const auto target = kTargets[key.second].target;
      const int64_t heads = target == LoraTarget::kQ ? config.num_heads : target == LoraTarget::kK ? config.num_kv_heads : 0;
      if (heads > 0 && !pair.b.empty() && pair.out == heads * config.head_dim) permute_rows_for_rope(pair.b, pair.rank, heads, config.head_dim);
    }
  }
  auto config_digest = sha256_file_hex(config_path.string());
  auto weights_digest = sha256_file_hex(weights_path.string());
  if (!config_digest) return std::unexpected(config_digest.error());
  if (!weights_digest) return std::unexpected(weights_digest.error());
  LoraAdapter adapter;
  adapter.path = dir.string();
  adapter.format = "peft";
  adapter.alpha = alpha;
  adapter.identity =
      digest_of(fmt::format("{}:{}:{}", *config_digest, *weights_digest, options.scale));
  return assemble(std::move(pairs), config, options, std::move(adapter), /*scale_by_rank=*/true, rslora);
}

}  // namespace

Result<std::shared_ptr<const LoraAdapter>> load_lora(const std::string& path, const ModelConfig& config,
                                                     const LoraLoadOptions& options) {
  std::error_code error;
  const fs::path p(path);
  if (!fs::exists(p, error)) return fail("LoRA adapter {} does not exist", path);
  if (fs::is_directory(p, error)) return load_peft(p, config, options);
  if (p.filename() == "adapter_config.json" || p.extension() == ".safetensors") return load_peft(p.parent_path(), config, options);
  return load_gguf(path, config, options);
}

Result<backend::LoraWeightType> parse_lora_weight_type(const std::string& name) {
  if (name == "q8") return backend::LoraWeightType::Q8;
  if (name == "f16") return backend::LoraWeightType::F16;
  return fail("unknown LoRA weight type '{}' (use q8 or f16)", name);
}

const char* lora_weight_type_name(backend::LoraWeightType type) { return type == backend::LoraWeightType::Q8 ? "q8" : "f16"; }

}  // namespace tern::model
