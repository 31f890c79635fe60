// The web console's aggregates (observe/live_stats.h): quantiles from histogram buckets as Prometheus's
// histogram_quantile computes them, per-second points from the difference of two samples, tables of
// traffic and spend.

#include <gtest/gtest.h>

#include "observe/live_stats.h"

namespace tern::observe {
namespace {

TEST(HistogramQuantile, InterpolatesWithinTheBucketLikePrometheus) {
  // 10 observations in (0, 0.1], 10 in (0.1, 0.2]; none above.
  const HistogramCounts h{.bounds = {0.1, 0.2, 0.4}, .counts = {10, 10, 0, 0}};
  EXPECT_NEAR(*histogram_quantile(0.5, h), 0.1, 1e-9);
  EXPECT_NEAR(*histogram_quantile(0.25, h), 0.05, 1e-9);
  EXPECT_NEAR(*histogram_quantile(0.75, h), 0.15, 1e-9);
  EXPECT_NEAR(*histogram_quantile(0.99, h), 0.198, 1e-9);
  EXPECT_FALSE(histogram_quantile(0.5, {.bounds = {0.1}, .counts = {0, 0}}));
  // The +Inf bucket answers with the highest finite bound, as Prometheus does.
  EXPECT_NEAR(*histogram_quantile(0.99, {.bounds = {0.1, 0.2}, .counts = {1, 0, 99}}), 0.2, 1e-9);
}

EngineSample engine(int64_t generated, int64_t queried, int64_t hits, int64_t disk, int64_t pinned, std::vector<uint64_t> ttft) {
  EngineSample e;
  e.model = "m";
  e.loaded = true;
  e.running = 3;
  e.waiting = 1;
  e.kv_usage = 0.5;
  e.generation_tokens = generated;
  e.prefix_query_tokens = queried;
  e.prefix_hit_tokens = hits;
  e.disk_hit_tokens = disk;
  e.pinned_hit_tokens = pinned;
  e.ttft = {.bounds = {0.1, 0.2}, .counts = std::move(ttft)};
  e.itl = {.bounds = {0.01, 0.02}, .counts = {0, 0, 0}};
  return e;
}

TEST(LiveStats, PointsAreTheDifferenceBetweenSamples) {
  LiveStats stats(std::chrono::milliseconds(1000), 10);
  stats.add_sample({.engines = {engine(100, 1000, 500, 100, 50, {5, 0, 0})}, .deployments = {}});
  stats.on_request({.model = "m", .deployment = "m", .key_id = "k1", .org = "acme", .status = 200, .prompt_tokens = 10,
                    .cached_tokens = 0, .completion_tokens = 5, .cost_usd = 0.5});
  stats.on_request({.model = "-", .deployment = "", .key_id = "k1", .org = "acme", .status = 404, .prompt_tokens = 0,
                    .cached_tokens = 0, .completion_tokens = 0, .cost_usd = 0});
  stats.add_sample({.engines = {engine(300, 2000, 1100, 200, 100, {5, 10, 0})}, .deployments = {{.name = "m", .kind = "local", .breaker = "closed"}}});
  const auto j = stats.snapshot();
  ASSERT_EQ(j["series"].size(), 1u);
  const auto& p = j["series"][0];
  EXPECT_GT(p["output_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(p["prompt_tokens_looked_up"], 1000);
  EXPECT_NEAR(p["hit_rate_disk"].get<double>(), 0.1, 1e-9);
  EXPECT_NEAR(p["hit_rate_pinned"].get<double>(), 0.05, 1e-9);
  EXPECT_NEAR(p["hit_rate_ram"].get<double>(), 0.45, 1e-9);
  // Only the 10 new TTFTs count, all in (0.1, 0.2]: the median is 150 ms.
  EXPECT_NEAR(p["ttft_p50_ms"].get<double>(), 150, 1e-6);
  EXPECT_TRUE(p["itl_p50_ms"].is_null()) << "no inter-token gaps in this second";
  EXPECT_EQ(p["running"], 3);
  EXPECT_EQ(j["totals"]["requests"], 2);
  EXPECT_EQ(j["totals"]["errors"], 1);
  ASSERT_EQ(j["traffic"].size(), 2u);
  ASSERT_EQ(j["spend"]["keys"].size(), 1u);
  EXPECT_EQ(j["spend"]["keys"][0]["org"], "acme");
  EXPECT_EQ(j["spend"]["keys"][0]["cost_usd"], 0.5);
  EXPECT_EQ(j["spend"]["orgs"][0]["requests"], 2);
  EXPECT_EQ(j["deployments"][0]["breaker"], "closed");
  EXPECT_EQ(j["engines"][0]["generation_tokens"], 300);
  // since: only newer points.
  EXPECT_TRUE(stats.snapshot(p["t"].get<double>())["series"].empty());
  // A model reloaded (counters back near zero) counts from zero instead of going negative.
  stats.add_sample({.engines = {engine(7, 10, 0, 0, 0, {1, 0, 0})}, .deployments = {}});
  EXPECT_GE(stats.snapshot()["series"][1]["output_tokens_per_s"].get<double>(), 0);
}

TEST(LiveStats, KeepsABoundedHistoryAndSamplesOnItsOwnThread) {
  LiveStats stats(std::chrono::milliseconds(5), 4);
  int calls = 0;
  stats.start([&calls] {
    ++calls;
    return GaugeSample{};
  });
  while (stats.snapshot()["series"].size() < 4) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stats.stop();
  const int after_stop = calls;
  EXPECT_GE(after_stop, 5);
  EXPECT_EQ(stats.snapshot()["series"].size(), 4u);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(calls, after_stop);
}

}  // namespace
}  // namespace tern::observe
