#pragma once
// `tern serve --metrics-compat vllm`: the engine metrics that vLLM also exports, again under vLLM's
// names, so tools that read a vLLM server read tern unchanged - among them the Kubernetes Gateway API
// Inference Extension's endpoint picker (queue length, KV use, running LoRA adapters). tern's own names
// already follow vLLM's with the `tern:` prefix and the same `model_name` label; the copies carry the
// `vllm:` prefix, and vllm:kv_cache_usage_perc is also written as the older vllm:gpu_cache_usage_perc.
// The mapping is in docs/observability.md.

#include <span>
#include <string>
#include <string_view>

namespace tern::observe {

/// tern metric names (without prefix) whose vLLM counterpart has the same name and meaning.
std::span<const std::string_view> vllm_compatible_metrics();

/// The families of `tern_text` (Prometheus text) that vLLM also exports, renamed to vllm:; append it
/// to the same response.
std::string vllm_compat_metrics(std::string_view tern_text);

}  // namespace tern::observe
