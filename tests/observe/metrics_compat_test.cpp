// --metrics-compat vllm (observe/metrics_compat.h): the families vLLM shares are copied under vllm:,
// histograms whole, labels kept; tern-only families are not; KV use also as gpu_cache_usage_perc.

#include <gtest/gtest.h>

#include <string>

#include "observe/metrics_compat.h"

namespace tern::observe {
namespace {

TEST(VllmCompatMetrics, CopiesTheSharedFamiliesUnderVllmNames) {
  const std::string tern =
      "# HELP tern:num_requests_waiting Requests queued for admission.\n"
      "# TYPE tern:num_requests_waiting gauge\n"
      "tern:num_requests_waiting{model_name=\"m\"} 3\n"
      "# HELP tern:kv_cache_usage_perc Fraction of KV cache blocks held by requests (0..1).\n"
      "# TYPE tern:kv_cache_usage_perc gauge\n"
      "tern:kv_cache_usage_perc{model_name=\"m\"} 0.25\n"
      "# HELP tern:kv_pinned_blocks KV blocks pinned.\n"
      "# TYPE tern:kv_pinned_blocks gauge\n"
      "tern:kv_pinned_blocks{model_name=\"m\"} 7\n"
      "# HELP tern:time_to_first_token_seconds TTFT.\n"
      "# TYPE tern:time_to_first_token_seconds histogram\n"
      "tern:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.1\"} 2\n"
      "tern:time_to_first_token_seconds_sum{model_name=\"m\"} 0.12\n"
      "tern:time_to_first_token_seconds_count{model_name=\"m\"} 2\n"
      "tern:lora_requests_info{model_name=\"m\",running_lora_adapters=\"a,b\",waiting_lora_adapters=\"\",max_lora=\"4\"} 1764230400.000\n"
      "tern:http_connections_open 2\n";
  const std::string vllm = vllm_compat_metrics(tern);
  EXPECT_NE(vllm.find("# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 3\n"), std::string::npos) << vllm;
  EXPECT_NE(vllm.find("vllm:kv_cache_usage_perc{model_name=\"m\"} 0.25\n"), std::string::npos);
  EXPECT_NE(vllm.find("vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.25\n"), std::string::npos);
  EXPECT_NE(vllm.find("# TYPE vllm:gpu_cache_usage_perc gauge\n"), std::string::npos);
  EXPECT_NE(vllm.find("vllm:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.1\"} 2\n"), std::string::npos);
  EXPECT_NE(vllm.find("vllm:time_to_first_token_seconds_count{model_name=\"m\"} 2\n"), std::string::npos);
  EXPECT_NE(vllm.find("vllm:lora_requests_info{model_name=\"m\",running_lora_adapters=\"a,b\""), std::string::npos);
  EXPECT_EQ(vllm.find("kv_pinned_blocks"), std::string::npos) << "a tern-only family";
  EXPECT_EQ(vllm.find("http_connections_open"), std::string::npos);
  EXPECT_EQ(vllm.find("tern:"), std::string::npos);
  EXPECT_EQ(vllm_compat_metrics(""), "");
  EXPECT_EQ(vllm_compat_metrics("garbage\n# HELP\ntern:\n"), "");
}

}  // namespace
}  // namespace tern::observe
