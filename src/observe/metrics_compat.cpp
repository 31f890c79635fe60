#include "observe/metrics_compat.h"

#include <algorithm>
#include <array>

namespace tern::observe {
namespace {

constexpr std::array<std::string_view, 21> kVllmNames = {
    "num_requests_running",       "num_requests_waiting",         "kv_cache_usage_perc",
    "prefix_cache_queries_total", "prefix_cache_hits_total",      "num_preemptions_total",
    "prompt_tokens_total",        "generation_tokens_total",      "iteration_tokens_total",
    "request_success_total",      "time_to_first_token_seconds",  "inter_token_latency_seconds",
    "e2e_request_latency_seconds", "request_queue_time_seconds",  "request_prefill_time_seconds",
    "request_decode_time_seconds", "request_prompt_tokens",       "request_generation_tokens",
    "lora_requests_info",         "spec_decode_num_draft_tokens_total", "spec_decode_num_accepted_tokens_total",
};

/// The family a sample or HELP/TYPE line belongs to: its name without a histogram suffix.
std::string_view family_of(std::string_view name) {
  for (std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (name.ends_with(suffix)) {
      const std::string_view base = name.substr(0, name.size() - suffix.size());
      if (std::find(kVllmNames.begin(), kVllmNames.end(), base) != kVllmNames.end()) return base;
    }
  }
  return name;
}

}  // namespace

std::span<const std::string_view> vllm_compatible_metrics() { return kVllmNames; }

std::string vllm_compat_metrics(std::string_view tern_text) {
  std::string out;
  size_t start = 0;
  while (start < tern_text.size()) {
    size_t end = tern_text.find('\n', start);
    if (end == std::string_view::npos) end = tern_text.size();
    const std::string_view line = tern_text.substr(start, end - start);
    start = end + 1;
    // "# HELP tern:x ...", "# TYPE tern:x ...", "tern:x{...} v" / "tern:x v".
    std::string_view head, rest = line;
    if (line.starts_with("# HELP ") || line.starts_with("# TYPE ")) {
      head = line.substr(0, 7);
      rest = line.substr(7);
    }
    if (!rest.starts_with("tern:")) continue;
    const std::string_view named = rest.substr(5);
    const size_t name_end = named.find_first_of("{ ");
    const std::string_view name = named.substr(0, name_end);
    const std::string_view family = family_of(name);
    if (std::find(kVllmNames.begin(), kVllmNames.end(), family) == kVllmNames.end()) continue;
    const std::string_view tail = named.substr(name.size());
    out.append(head).append("vllm:").append(name).append(tail).push_back('\n');
    if (family == "kv_cache_usage_perc") out.append(head).append("vllm:gpu_cache_usage_perc").append(tail).push_back('\n');
  }
  return out;
}

}  // namespace tern::observe
