// Histogram and EngineMetrics::render(): cumulative buckets, +Inf == count, and the Prometheus
// text format with vLLM's metric names under the `tern:` prefix.

#include "engine/engine_metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tern::engine {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// Samples of a rendering: "name{labels}" -> value (as text).
std::map<std::string, std::string> samples_of(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& line : lines_of(text)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    if (space == std::string::npos) continue;
    EXPECT_TRUE(out.emplace(line.substr(0, space), line.substr(space + 1)).second) << "duplicate series: " << line;
  }
  return out;
}

double value_of(const std::map<std::string, std::string>& samples, const std::string& series) {
  auto it = samples.find(series);
  EXPECT_NE(it, samples.end()) << "missing series " << series;
  return it == samples.end() ? -1 : std::stod(it->second);
}

/// The `le` buckets of one histogram series, in order: (le, cumulative count).
std::vector<std::pair<std::string, double>> buckets_of(const std::string& text, const std::string& name) {
  std::vector<std::pair<std::string, double>> out;
  const std::string prefix = name + "_bucket{";
  for (const auto& line : lines_of(text)) {
    if (line.rfind(prefix, 0) != 0) continue;
    const size_t le = line.find("le=\"");
    const size_t end = line.find('"', le + 4);
    out.emplace_back(line.substr(le + 4, end - le - 4), std::stod(line.substr(line.rfind(' ') + 1)));
  }
  return out;
}

// Buckets are cumulative (a value equal to a bound counts in that bucket), +Inf equals the count,
// and _sum/_count follow.
TEST(HistogramTest, CumulativeBuckets) {
  Histogram h({1, 2, 5});
  for (double v : {0.5, 1.0, 2.0, 3.0, 100.0}) h.observe(v);
  EXPECT_EQ(h.count(), 5u);
  std::string out;
  h.render(out, "m", "k=\"v\"");
  const auto s = samples_of(out);
  EXPECT_EQ(value_of(s, "m_bucket{k=\"v\",le=\"1\"}"), 2);  // 0.5, 1.0
  EXPECT_EQ(value_of(s, "m_bucket{k=\"v\",le=\"2\"}"), 3);  // + 2.0
  EXPECT_EQ(value_of(s, "m_bucket{k=\"v\",le=\"5\"}"), 4);  // + 3.0
  EXPECT_EQ(value_of(s, "m_bucket{k=\"v\",le=\"+Inf\"}"), 5);
  EXPECT_DOUBLE_EQ(value_of(s, "m_sum{k=\"v\"}"), 106.5);
  EXPECT_EQ(value_of(s, "m_count{k=\"v\"}"), 5);
  EXPECT_EQ(s.size(), 6u);
}

// An empty histogram renders all-zero buckets.
TEST(HistogramTest, Empty) {
  Histogram h({0.1, 1});
  std::string out;
  h.render(out, "m", "a=\"b\"");
  const auto s = samples_of(out);
  EXPECT_EQ(value_of(s, "m_bucket{a=\"b\",le=\"0.1\"}"), 0);
  EXPECT_EQ(value_of(s, "m_bucket{a=\"b\",le=\"+Inf\"}"), 0);
  EXPECT_EQ(value_of(s, "m_count{a=\"b\"}"), 0);
  EXPECT_EQ(value_of(s, "m_sum{a=\"b\"}"), 0);
}

// Random observations: buckets never decrease, the last equals the count, and each bucket holds
// exactly the observations <= its bound.
TEST(HistogramTest, BucketsMatchObservations) {
  const std::vector<double> bounds = {0.001, 0.01, 0.1, 1, 10};
  Histogram h(bounds);
  std::vector<double> values;
  for (int i = 0; i < 200; ++i) values.push_back(0.0001 * (i * i % 997) * (i % 7 + 1));
  for (double v : values) h.observe(v);
  std::string out;
  h.render(out, "x", "l=\"1\"");
  const auto buckets = buckets_of(out, "x");
  ASSERT_EQ(buckets.size(), bounds.size() + 1);
  for (size_t i = 0; i < bounds.size(); ++i) {
    EXPECT_DOUBLE_EQ(std::stod(buckets[i].first), bounds[i]);
    size_t expected = 0;
    for (double v : values) expected += v <= bounds[i] ? 1 : 0;
    EXPECT_EQ(buckets[i].second, static_cast<double>(expected)) << "le=" << buckets[i].first;
    if (i > 0) {
      EXPECT_GE(buckets[i].second, buckets[i - 1].second);
    }
  }
  EXPECT_EQ(buckets.back().first, "+Inf");
  EXPECT_EQ(buckets.back().second, 200);
}

// render() exposes every metric under its vLLM name with the `tern:` prefix, HELP and TYPE lines,
// and the model_name label.
TEST(EngineMetricsTest, RenderContainsExpectedMetrics) {
  EngineMetrics m("tiny-model");
  const std::string out = m.render();
  const auto s = samples_of(out);

  const std::map<std::string, std::string> families = {
      {"tern:num_requests_running", "gauge"},
      {"tern:num_requests_waiting", "gauge"},
      {"tern:kv_cache_usage_perc", "gauge"},
      {"tern:prefix_cache_queries_total", "counter"},
      {"tern:prefix_cache_hits_total", "counter"},
      {"tern:prompt_tokens_total", "counter"},
      {"tern:generation_tokens_total", "counter"},
      {"tern:num_preemptions_total", "counter"},
      {"tern:request_success_total", "counter"},
      {"tern:time_to_first_token_seconds", "histogram"},
      {"tern:inter_token_latency_seconds", "histogram"},
      {"tern:e2e_request_latency_seconds", "histogram"},
      {"tern:request_queue_time_seconds", "histogram"},
      {"tern:request_prefill_time_seconds", "histogram"},
      {"tern:request_decode_time_seconds", "histogram"},
      {"tern:iteration_tokens_total", "histogram"},
  };
  for (const auto& [name, type] : families) {
    EXPECT_NE(out.find("# TYPE " + name + " " + type + "\n"), std::string::npos) << name;
    EXPECT_NE(out.find("# HELP " + name + " "), std::string::npos) << name;
  }
  const std::string l = "{model_name=\"tiny-model\"}";
  for (const char* gauge : {"tern:num_requests_running", "tern:kv_cache_usage_perc", "tern:prefix_cache_queries_total",
                            "tern:prefix_cache_hits_total", "tern:prompt_tokens_total", "tern:generation_tokens_total",
                            "tern:num_preemptions_total"}) {
    EXPECT_EQ(value_of(s, gauge + l), 0) << gauge;
  }
  for (const char* reason : {"stop", "length", "abort"}) {
    EXPECT_EQ(value_of(s, std::string("tern:request_success_total{model_name=\"tiny-model\",finished_reason=\"") + reason + "\"}"), 0);
  }
  EXPECT_EQ(value_of(s, "tern:time_to_first_token_seconds_bucket{model_name=\"tiny-model\",le=\"+Inf\"}"), 0);
  EXPECT_EQ(value_of(s, "tern:inter_token_latency_seconds_count" + l), 0);
  EXPECT_EQ(value_of(s, "tern:e2e_request_latency_seconds_count" + l), 0);
  EXPECT_EQ(value_of(s, "tern:request_queue_time_seconds_count" + l), 0);
  EXPECT_EQ(value_of(s, "tern:request_prefill_time_seconds_count" + l), 0);
  EXPECT_EQ(value_of(s, "tern:request_decode_time_seconds_count" + l), 0);
  EXPECT_EQ(value_of(s, "tern:iteration_tokens_total_count" + l), 0);
}

// Every sample belongs to a family declared by a TYPE line; each family is declared once; every
// sample line is "name{labels} value" with a numeric value.
TEST(EngineMetricsTest, WellFormedExposition) {
  EngineMetrics m("m");
  m.on_first_token(0.2);
  m.on_finished("stop", 1, 0.1, 0.2, 0.7, 10, 5);
  const std::string out = m.render();
  std::map<std::string, std::string> types;
  for (const auto& line : lines_of(out)) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream in(line.substr(7));
      std::string name, type;
      in >> name >> type;
      EXPECT_TRUE(types.emplace(name, type).second) << "declared twice: " << name;
    }
  }
  for (const auto& [series, value] : samples_of(out)) {
    const std::string name = series.substr(0, series.find('{'));
    ASSERT_NE(series.find('{'), std::string::npos) << series;
    EXPECT_EQ(series.back(), '}') << series;
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string sfx = suffix;
      if (!types.contains(family) && name.size() > sfx.size() && name.ends_with(sfx)) family = name.substr(0, name.size() - sfx.size());
    }
    EXPECT_TRUE(types.contains(family)) << "sample without TYPE: " << series;
    EXPECT_NO_THROW((void)std::stod(value)) << series << " " << value;
  }
}

// Recorded values show up: counters, gauges, finish reasons and histogram counts.
TEST(EngineMetricsTest, RecordedValuesRendered) {
  EngineMetrics m("m");
  m.set_gauges({.running = 3, .waiting = 2, .kv_usage = 0.25, .prefix_queries = 100, .prefix_hits = 40, .pins = {},
                .ram_evictions = 5, .disk_hit_tokens = 0, .disk = std::nullopt});
  m.on_prompt_tokens(17);
  m.on_prompt_tokens(5);
  for (int i = 0; i < 4; ++i) m.on_generation_token();
  m.on_step({.num_tokens = 7, .num_prefill_tokens = 5, .num_preemptions = 2, .measured_seconds = 0.03,
             .predicted_seconds = 0.024, .is_itl_limited = true,
             .cost = {.fixed_s = 0.002, .per_token_s = 0.001, .per_context_s = 1e-6}});
  m.on_step({.num_tokens = 9, .num_prefill_tokens = 0, .measured_seconds = 0.02, .predicted_seconds = 0.021,
             .cost = {.fixed_s = 0.003, .per_token_s = 0.0011, .per_context_s = 2e-6, .per_logit_row_s = 4e-4}});
  m.on_speculation(4, 3);  // a step: 4 guesses verified, 3 accepted -> 4 tokens
  m.on_speculation(2, 0);
  m.on_speculative_request(6, 3);
  m.on_first_token(0.05);
  m.on_inter_token(0.01);
  m.on_inter_token(0.02);
  m.on_finished("stop", 2.0, 0.5, 0.25, 1.25, 22, 4);
  m.on_finished("length", 3.0, 0.5, 0.25, 2.25, 10, 16);
  m.on_finished("length", 3.0, 0.5, 0.25, 2.25, 10, 16);

  const auto s = samples_of(m.render());
  const std::string l = "{model_name=\"m\"}";
  EXPECT_EQ(value_of(s, "tern:num_requests_running" + l), 3);
  EXPECT_EQ(value_of(s, "tern:num_requests_waiting" + l), 2);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:kv_cache_usage_perc" + l), 0.25);
  EXPECT_EQ(value_of(s, "tern:prefix_cache_queries_total" + l), 100);
  EXPECT_EQ(value_of(s, "tern:prefix_cache_hits_total" + l), 40);
  EXPECT_EQ(value_of(s, "tern:prompt_tokens_total" + l), 22);
  EXPECT_EQ(value_of(s, "tern:generation_tokens_total" + l), 4);
  EXPECT_EQ(value_of(s, "tern:num_preemptions_total" + l), 2);
  EXPECT_EQ(value_of(s, "tern:request_success_total{model_name=\"m\",finished_reason=\"stop\"}"), 1);
  EXPECT_EQ(value_of(s, "tern:request_success_total{model_name=\"m\",finished_reason=\"length\"}"), 2);
  EXPECT_EQ(value_of(s, "tern:request_success_total{model_name=\"m\",finished_reason=\"abort\"}"), 0);
  EXPECT_EQ(value_of(s, "tern:time_to_first_token_seconds_count" + l), 1);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:time_to_first_token_seconds_sum" + l), 0.05);
  EXPECT_EQ(value_of(s, "tern:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.04\"}"), 0);
  EXPECT_EQ(value_of(s, "tern:time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.06\"}"), 1);
  EXPECT_EQ(value_of(s, "tern:inter_token_latency_seconds_count" + l), 2);
  EXPECT_EQ(value_of(s, "tern:e2e_request_latency_seconds_count" + l), 3);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:e2e_request_latency_seconds_sum" + l), 8.0);
  EXPECT_EQ(value_of(s, "tern:request_queue_time_seconds_count" + l), 3);
  EXPECT_EQ(value_of(s, "tern:request_prefill_time_seconds_count" + l), 3);
  EXPECT_EQ(value_of(s, "tern:request_decode_time_seconds_count" + l), 3);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:request_decode_time_seconds_sum" + l), 5.75);
  EXPECT_EQ(value_of(s, "tern:iteration_tokens_total_count" + l), 2);
  EXPECT_EQ(value_of(s, "tern:iteration_tokens_total_sum" + l), 16);
  EXPECT_EQ(value_of(s, "tern:iteration_tokens_total_bucket{model_name=\"m\",le=\"8\"}"), 1);
  EXPECT_EQ(value_of(s, "tern:iteration_tokens_total_bucket{model_name=\"m\",le=\"16\"}"), 2);
  EXPECT_EQ(value_of(s, "tern:request_prompt_tokens_count" + l), 3);
  EXPECT_EQ(value_of(s, "tern:request_generation_tokens_sum" + l), 36);
  // The scheduler's step-time model and chosen chunk: the last step's values, and histograms of all.
  EXPECT_EQ(value_of(s, "tern:itl_limited_steps_total" + l), 1);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_time_predicted_seconds" + l), 0.021);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_time_last_seconds" + l), 0.02);
  EXPECT_EQ(value_of(s, "tern:step_prefill_chunk_tokens" + l), 0);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_cost_model_seconds{model_name=\"m\",term=\"fixed\"}"), 0.003);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_cost_model_seconds{model_name=\"m\",term=\"per_token\"}"), 0.0011);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_cost_model_seconds{model_name=\"m\",term=\"per_context_pair\"}"), 2e-6);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_cost_model_seconds{model_name=\"m\",term=\"per_logit_row\"}"), 4e-4);
  // Speculative decoding: counters, tokens gained per verifying step, each request's acceptance rate.
  EXPECT_EQ(value_of(s, "tern:spec_decode_num_drafts_total" + l), 2);
  EXPECT_EQ(value_of(s, "tern:spec_decode_num_draft_tokens_total" + l), 6);
  EXPECT_EQ(value_of(s, "tern:spec_decode_num_accepted_tokens_total" + l), 3);
  EXPECT_EQ(value_of(s, "tern:spec_decode_tokens_per_step_sum" + l), 5);
  EXPECT_EQ(value_of(s, "tern:spec_decode_tokens_per_step_bucket{model_name=\"m\",le=\"1\"}"), 1);
  EXPECT_EQ(value_of(s, "tern:spec_decode_acceptance_rate_count" + l), 1);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:spec_decode_acceptance_rate_sum" + l), 0.5);
  EXPECT_EQ(value_of(s, "tern:step_time_seconds_count" + l), 2);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:step_time_seconds_sum" + l), 0.05);
  EXPECT_EQ(value_of(s, "tern:step_prefill_tokens_count" + l), 1);  // only steps that carried a prompt chunk
  EXPECT_EQ(value_of(s, "tern:step_prefill_tokens_sum" + l), 5);
  EXPECT_EQ(value_of(s, "tern:step_time_prediction_error_seconds_bucket{model_name=\"m\",le=\"0.005\"}"), 1);
  EXPECT_EQ(value_of(s, "tern:step_time_prediction_error_seconds_bucket{model_name=\"m\",le=\"0.01\"}"), 2);

  const EngineGauges g = m.gauges();
  EXPECT_EQ(g.running, 3);
  EXPECT_EQ(g.prefix_hits, 40);
}

// Every histogram in the rendering is cumulative with +Inf == _count.
TEST(EngineMetricsTest, AllHistogramsCumulative) {
  EngineMetrics m("m");
  for (int i = 0; i < 50; ++i) {
    m.on_first_token(0.003 * i);
    m.on_inter_token(0.0007 * i * i);
    m.on_step({.num_tokens = i * 37, .num_prefill_tokens = i * 30 + 1, .measured_seconds = 0.001 * i, .predicted_seconds = 0.0012 * i, .cost = {}});
    m.on_finished(i % 2 ? "stop" : "length", 0.4 * i, 0.01 * i, 0.02 * i, 0.3 * i, i * 100, i * 3);
  }
  const std::string out = m.render();
  const auto s = samples_of(out);
  for (const char* name : {"tern:time_to_first_token_seconds", "tern:inter_token_latency_seconds", "tern:e2e_request_latency_seconds",
                           "tern:request_queue_time_seconds", "tern:request_prefill_time_seconds",
                           "tern:request_decode_time_seconds", "tern:iteration_tokens_total", "tern:request_prompt_tokens",
                           "tern:request_generation_tokens", "tern:step_time_seconds", "tern:step_prefill_tokens",
                           "tern:step_time_prediction_error_seconds"}) {
    const auto buckets = buckets_of(out, name);
    ASSERT_GT(buckets.size(), 1u) << name;
    for (size_t i = 1; i < buckets.size(); ++i) EXPECT_GE(buckets[i].second, buckets[i - 1].second) << name;
    for (size_t i = 0; i + 1 < buckets.size(); ++i) EXPECT_NO_THROW((void)std::stod(buckets[i].first)) << name;
    EXPECT_EQ(buckets.back().first, "+Inf") << name;
    EXPECT_EQ(buckets.back().second, value_of(s, std::string(name) + "_count{model_name=\"m\"}")) << name;
    EXPECT_EQ(buckets.back().second, 50) << name;
  }
}

// The model name is escaped inside the label value.
TEST(EngineMetricsTest, ModelNameEscaped) {
  EngineMetrics m("we\"ird\\name");
  const std::string out = m.render();
  EXPECT_NE(out.find("tern:num_requests_running{model_name=\"we\\\"ird\\\\name\"} 0"), std::string::npos) << out.substr(0, 400);
}

TEST(EngineMetricsTest, ItlTargetInForce) {
  EngineMetrics m("m");
  const std::string l = "{model_name=\"m\"}";
  auto s = samples_of(m.render());
  EXPECT_EQ(value_of(s, "tern:itl_target_seconds" + l), 0);
  EXPECT_EQ(value_of(s, "tern:itl_target_factor" + l), 0);
  m.set_itl_target(0, 1.4);
  s = samples_of(m.render());
  EXPECT_EQ(value_of(s, "tern:itl_target_seconds" + l), 0);
  EXPECT_DOUBLE_EQ(value_of(s, "tern:itl_target_factor" + l), 1.4);
  m.set_itl_target(0.1, 0);
  s = samples_of(m.render());
  EXPECT_DOUBLE_EQ(value_of(s, "tern:itl_target_seconds" + l), 0.1);
  EXPECT_EQ(value_of(s, "tern:itl_target_factor" + l), 0);
}

// The engine thread records while the HTTP side renders: no data race (run under TSan to check),
// and the final counts add up.
TEST(EngineMetricsTest, ConcurrentRecordAndRender) {
  EngineMetrics m("m");
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) {
      m.on_generation_token();
      m.on_inter_token(0.001);
    }
  });
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(m.render().empty());
  writer.join();
  const auto s = samples_of(m.render());
  EXPECT_EQ(value_of(s, "tern:generation_tokens_total{model_name=\"m\"}"), 2000);
  EXPECT_EQ(value_of(s, "tern:inter_token_latency_seconds_count{model_name=\"m\"}"), 2000);
}

}  // namespace
}  // namespace tern::engine
