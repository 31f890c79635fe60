#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <set>

namespace tern::model {
namespace {

// Bounds that no real model comes near; they keep a hostile file from asking for absurd buffers.
constexpr int64_t kMaxDimension = 1 << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxExperts = 1024;

using backend::RopeStyle;

// What distinguishes each architecture, as llama.cpp builds its graph; the keys are the "<arch>.*"
// metadata an architecture may carry beyond the common ones below.
struct ArchTraits {
  const char* name;
  Arch arch;
  RopeStyle rope;
  QkNorm qk_norm;
  bool qkv_bias;
  bool may_have_experts;
  bool normalize_expert_weights;  ///< llama.cpp's norm_w for this architecture
  std::vector<std::string> keys;
};

// expert_gating_func's value is checked before the key scan (softmax only).
const std::vector<std::string> kExpertKeys = {"expert_count", "expert_used_count", "expert_feed_forward_length",
                                              "expert_gating_func"};

const std::vector<ArchTraits>& arch_table() {
  static const std::vector<ArchTraits> table = {
      // Llama 2/3.x, Mistral; Mixtral (its experts are feed_forward_length wide).
      {"llama", Arch::LLAMA, RopeStyle::NORM, QkNorm::NONE, false, true, true,
       {"expert_count", "expert_used_count", "expert_gating_func"}},
      {"qwen2", Arch::QWEN2, RopeStyle::NEOX, QkNorm::NONE, true, false, false, {}},
      {"qwen3", Arch::QWEN3, RopeStyle::NEOX, QkNorm::PER_HEAD, false, false, false, {}},
      {"qwen2moe", Arch::QWEN2MOE, RopeStyle::NEOX, QkNorm::NONE, true, true, false,
       {"expert_count", "expert_used_count", "expert_feed_forward_length", "expert_shared_feed_forward_length",
        "expert_gating_func"}},
      {"qwen3moe", Arch::QWEN3MOE, RopeStyle::NEOX, QkNorm::PER_HEAD, false, true, true, kExpertKeys},
      {"olmoe", Arch::OLMOE, RopeStyle::NEOX, QkNorm::WHOLE, false, true, false,
       {"expert_count", "expert_used_count", "expert_gating_func"}},
      // Phi-3's converter writes a sliding window that llama.cpp ignores (its values are wrong for
      // several releases), and so does tern.
      {"phi3", Arch::PHI3, RopeStyle::NEOX, QkNorm::NONE, false, false, false,
       {"attention.sliding_window", "rope.scaling.original_context_length", "rope.scaling.attn_factor"}},
      {"gemma2", Arch::GEMMA2, RopeStyle::NEOX, QkNorm::NONE, false, false, false,
       {"attention.sliding_window", "attention.sliding_window_pattern", "attn_logit_softcapping", "final_logit_softcapping"}},
      {"gemma3", Arch::GEMMA3, RopeStyle::NEOX, QkNorm::PER_HEAD, false, false, false,
       {"attention.sliding_window", "attention.sliding_window_pattern", "rope.freq_base_swa", "final_logit_softcapping"}},
  };
  return table;
}

// Keys every architecture may carry: the shape, the norm epsilon, RoPE's base and linear scaling.
const std::set<std::string> kCommonKeys = {
    "context_length", "embedding_length", "block_count", "feed_forward_length", "vocab_size",
    "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "attention.key_length",
    "attention.value_length", "rope.freq_base", "rope.dimension_count", "rope.scaling.type", "rope.scaling.factor",
    "rope.scale_linear", "rope.scaling.finetuned"};

// Which layers are local: "<arch>.attention.sliding_window_pattern" is either a period n (layer i is
// local when i % n < n - 1: five local then one global for n = 6) or one flag per layer.
Result<void> read_sliding_layers(const gguf::GgufFile& file, const std::string& key, int64_t default_period, ModelConfig& c) {
  if (c.sliding_window <= 0) return {};
  const gguf::Value* value = file.find(key);
  if (value != nullptr && value->as_array() != nullptr) {
    const gguf::Array& flags = *value->as_array();
    if (flags.element_type != gguf::ValueType::BOOL || static_cast<int64_t>(flags.size) != c.num_layers) {
      return fail("{}: {} is not one flag per layer ({} entries of {} for {} layers)", file.name(), key, flags.size,
                  gguf::value_type_name(flags.element_type), c.num_layers);
    }
    for (int64_t layer = 0; layer < c.num_layers; ++layer) c.layer_is_sliding[layer] = flags.numeric_at<uint8_t>(layer, 1) != 0;
    return {};
  }
  int64_t period = default_period;
  if (value != nullptr) {
    auto v = value->as_uint();
    if (!v || *v > static_cast<uint64_t>(kMaxLayers)) return fail("{}: {} is not a layer period", file.name(), key);
    period = static_cast<int64_t>(*v);
  }
  for (int64_t layer = 0; layer < c.num_layers; ++layer) c.layer_is_sliding[layer] = period > 0 && layer % period < period - 1;
  return {};
}

}  // namespace

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const ArchTraits& traits : arch_table()) out.push_back(traits.name);
    return out;
  }();
  return names;
}

Result<ModelConfig> read_config(const gguf::GgufFile& file) {
  ModelConfig c;
  auto arch = file.get_string("general.architecture");
  if (!arch) return std::unexpected(arch.error());
  c.arch_name = *arch;
  const auto& table = arch_table();
  const auto traits_it = std::find_if(table.begin(), table.end(), [&](const ArchTraits& t) { return c.arch_name == t.name; });
  if (traits_it == table.end()) {
    return fail("{}: architecture '{}' is not supported (tern runs {})", file.name(), c.arch_name,
                fmt::join(supported_architectures(), ", "));
  }
  const ArchTraits& traits = *traits_it;
  c.arch = traits.arch;

  const std::string p = c.arch_name + ".";
  // RoPE scaling first: its type explains the keys that come with it (YaRN's factors).
  bool yarn = false;
  if (const gguf::Value* scaling = file.find(p + "rope.scaling.type")) {
    const auto type = scaling->as_string();
    // YaRN on the architectures with one RoPE for every layer and no other scaling of their own.
    yarn = type && *type == "yarn" && c.arch != Arch::PHI3 && c.arch != Arch::GEMMA2 && c.arch != Arch::GEMMA3;
    const bool implemented = type && (*type == "none" || *type == "linear" || yarn || (*type == "longrope" && c.arch == Arch::PHI3));
    if (!implemented) {
      return fail("{}: {}rope.scaling.type '{}' is not implemented for {} (tern implements none and linear, YaRN on "
                  "Llama, Qwen and OLMoE files, Llama 3's rope_freqs and Phi-3's LongRoPE)", file.name(), p,
                  type ? std::string(*type) : scaling->to_display_string(), c.arch_name);
    }
  }
  // A mixture's gating function, when a converter writes it, must be the softmax tern computes.
  if (const gguf::Value* gating = file.find(p + "expert_gating_func"); gating && traits.may_have_experts) {
    if (gating->as_uint() != 1u) {
      return fail("{}: {}expert_gating_func = {} is not implemented (tern's routers are softmax, 1)", file.name(), p,
                  gating->to_display_string());
    }
  }
  // Refuse what tern would otherwise ignore.
  for (const auto& [key, value] : file.metadata()) {
    if (!key.starts_with(p)) continue;
    const std::string suffix(key.substr(p.size()));
    if (kCommonKeys.contains(suffix) || std::find(traits.keys.begin(), traits.keys.end(), suffix) != traits.keys.end()) continue;
    if (yarn && (suffix == "rope.scaling.original_context_length" || suffix == "rope.scaling.attn_factor")) continue;
    return fail("{}: metadata key '{}' is not one tern implements for {} (it may change the computation, so tern "
                "refuses the model rather than answer differently from it)", file.name(), key, c.arch_name);
  }

  auto get = [&](const std::string& key, int64_t& out) -> Result<void> {
    auto v = file.get_uint(p + key);
    if (!v) return std::unexpected(v.error());
    if (*v == 0 || *v > static_cast<uint64_t>(kMaxDimension)) return fail("{}: {}{} = {} is out of range", file.name(), p, key, *v);
    out = static_cast<int64_t>(*v);
    return {};
  };
  auto get_optional = [&](const std::string& key, int64_t& out) -> Result<void> {
    if (!file.find(p + key)) return {};
    return get(key, out);
  };
  for (auto [key, slot] : {std::pair{"embedding_length", &c.embedding_length}, std::pair{"block_count", &c.num_layers},
                           std::pair{"attention.head_count", &c.num_heads}, std::pair{"feed_forward_length", &c.ffn_length},
                           std::pair{"context_length", &c.context_length}}) {
    if (auto ok = get(key, *slot); !ok) return std::unexpected(ok.error());
  }
  if (c.num_layers > kMaxLayers) return fail("{}: {} layers is out of range", file.name(), c.num_layers);
  c.num_kv_heads = c.num_heads;
  if (auto ok = get_optional("attention.head_count_kv", c.num_kv_heads); !ok) return std::unexpected(ok.error());
  if (c.num_heads % c.num_kv_heads != 0) {
    return fail("{}: {} heads is not a multiple of {} KV heads", file.name(), c.num_heads, c.num_kv_heads);
  }
  c.head_dim = c.embedding_length / c.num_heads;
  if (auto ok = get_optional("attention.key_length", c.head_dim); !ok) return std::unexpected(ok.error());
  c.value_dim = c.head_dim;
  if (auto ok = get_optional("attention.value_length", c.value_dim); !ok) return std::unexpected(ok.error());
  c.rotary_dims = c.head_dim;
  if (auto ok = get_optional("rope.dimension_count", c.rotary_dims); !ok) return std::unexpected(ok.error());
  if (c.rotary_dims > c.head_dim || c.rotary_dims % 2 != 0) {
    return fail("{}: rope.dimension_count {} does not fit head size {}", file.name(), c.rotary_dims, c.head_dim);
  }
  if (auto eps = file.get_float(p + "attention.layer_norm_rms_epsilon")) c.norm_eps = static_cast<float>(*eps);
  if (auto base = file.get_float(p + "rope.freq_base")) c.rope_base = static_cast<float>(*base);
  // As llama.cpp: the factor applies whatever the type says (none with a factor is linear).
  for (const char* key : {"rope.scaling.factor", "rope.scale_linear"}) {
    if (auto factor = file.get_float(p + key)) {
      if (!(*factor >= 0.0 && *factor < 1e6)) return fail("{}: {}{} = {} is out of range", file.name(), p, key, *factor);
      if (*factor != 0.0) c.rope_freq_scale = static_cast<float>(1.0 / *factor);
      break;
    }
  }
  if (auto tokens = file.get_array("tokenizer.ggml.tokens")) c.vocab_size = static_cast<int64_t>((*tokens)->size);

  c.rope_style = traits.rope;
  c.qk_norm = traits.qk_norm;
  c.qkv_bias = traits.qkv_bias;
  c.fused_qkv = c.arch == Arch::PHI3;
  c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  c.layer_is_sliding.assign(static_cast<size_t>(c.num_layers), false);

  if (traits.may_have_experts) {
    if (auto ok = get_optional("expert_count", c.num_experts); !ok) return std::unexpected(ok.error());
    const bool required = c.arch != Arch::LLAMA;  // a llama file without experts is a dense Llama
    if (required && c.num_experts == 0) return fail("{}: {}expert_count is missing", file.name(), p);
    if (c.num_experts > 0) {
      if (c.num_experts > kMaxExperts) return fail("{}: {} experts is out of range", file.name(), c.num_experts);
      if (auto ok = get("expert_used_count", c.num_experts_used); !ok) return std::unexpected(ok.error());
      if (c.num_experts_used > c.num_experts) {
        return fail("{}: {}expert_used_count {} exceeds expert_count {}", file.name(), p, c.num_experts_used, c.num_experts);
      }
      c.expert_ffn_length = c.ffn_length;
      if (auto ok = get_optional("expert_feed_forward_length", c.expert_ffn_length); !ok) return std::unexpected(ok.error());
      if (c.arch == Arch::QWEN2MOE) {
        c.shared_expert_ffn_length = c.ffn_length;
        if (auto ok = get_optional("expert_shared_feed_forward_length", c.shared_expert_ffn_length); !ok) {
          return std::unexpected(ok.error());
        }
      }
      c.normalize_expert_weights = traits.normalize_expert_weights;
    }
  }

  // Gemma 2 and 3: embeddings scaled by sqrt(n_embd), norms after each block, GELU, local layers.
  // Attention scales by 1/sqrt(head size) except in the 27B models, which use 1/sqrt(n_embd / heads):
  // their GGUFs do not carry query_pre_attn_scalar, so llama.cpp tells them by their layer count.
  if (c.is_gemma()) {
    c.rope_style = RopeStyle::NEOX;
    c.embedding_scale = std::sqrt(static_cast<float>(c.embedding_length));
    c.post_norms = true;
    c.gating = backend::Gating::GELU;
    const bool is_27b = c.num_layers == (c.arch == Arch::GEMMA2 ? 46 : 62);
    if (is_27b) c.attention_scale = 1.0f / std::sqrt(static_cast<float>(c.embedding_length / c.num_heads));
    if (auto cap = file.get_float(p + "final_logit_softcapping")) c.final_softcap = static_cast<float>(*cap);
  }
  if (c.arch == Arch::GEMMA2) {
    // Every other layer local (the even ones), window 4096 unless the file says; scores capped at 50.
    c.sliding_window = 4096;
    if (auto window = file.get_uint(p + "attention.sliding_window")) c.sliding_window = static_cast<int64_t>(*window);
    if (auto ok = read_sliding_layers(file, p + "attention.sliding_window_pattern", 2, c); !ok) return std::unexpected(ok.error());
    c.attn_softcap = 50.0f;
    if (auto cap = file.get_float(p + "attn_logit_softcapping")) c.attn_softcap = static_cast<float>(*cap);
    c.rope_base_sliding = c.rope_base;
    c.rope_freq_scale_sliding = c.rope_freq_scale;
  }
  if (c.arch == Arch::GEMMA3) {
    // Five local (sliding-window) layers, then one global layer; local layers use RoPE base 10k and
    // no linear scaling.
    if (auto window = file.get_uint(p + "attention.sliding_window")) c.sliding_window = static_cast<int64_t>(*window);
    if (auto ok = read_sliding_layers(file, p + "attention.sliding_window_pattern", 6, c); !ok) return std::unexpected(ok.error());
    c.rope_base_sliding = 10000.0f;
    if (auto base = file.get_float(p + "rope.freq_base_swa")) c.rope_base_sliding = static_cast<float>(*base);
  }
  if (c.arch == Arch::PHI3) {
    c.rope_original_context = c.context_length;
    if (auto ok = get_optional("rope.scaling.original_context_length", c.rope_original_context); !ok) {
      return std::unexpected(ok.error());
    }
  }
  if (yarn) {
    c.yarn_original_context = c.context_length;
    if (auto ok = get_optional("rope.scaling.original_context_length", c.yarn_original_context); !ok) {
      return std::unexpected(ok.error());
    }
  }
  if (auto factor = file.get_float(p + "rope.scaling.attn_factor"); factor && (c.arch == Arch::PHI3 || yarn)) {
    if (!(*factor > 0.0 && *factor < 100.0)) return fail("{}: {}rope.scaling.attn_factor = {} is out of range", file.name(), p, *factor);
    c.rope_attn_factor = static_cast<float>(*factor);
  }
  if (!(c.attn_softcap >= 0.0f && c.final_softcap >= 0.0f)) return fail("{}: a soft-capping value is negative", file.name());
  return c;
}

}  // namespace tern::model
