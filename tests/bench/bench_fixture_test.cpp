// `tern bench` against the deterministic fixture server: what the client measured must match what the
// server actually did to the same requests (its own chunk write times, same process, same steady clock),
// open-loop sends must follow the planned schedule, and usage, caching, sessions and errors must be
// accounted as the server reported them.
//
// No check compares a measurement with a *configured* delay: the server's timers fire when the machine
// lets them (a fraction of a millisecond late on a quiet virtual machine, several under load), and that
// slack is the machine's, not the client's. Every timing check is measured against measured.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <map>

#include "bench/metrics.h"
#include "bench/plan.h"
#include "bench/runner.h"
#include "bench/stats.h"
#include "fixture_server.h"

namespace tern::bench {
namespace {

using testing::FixtureConfig;
using testing::FixtureServer;

// What is tested is the client's clock reading of each chunk: the time from the server handing a chunk
// to the kernel to the client recording it (loopback delivery, one event-loop wake-up, SSE parsing;
// tens of microseconds when the client thread has a core). docs/bench.md promises 1 ms, so that is the
// tolerance on that lag; every other figure is a difference or a sum of chunk times, so its bound
// follows from this one. Sanitizer builds (scripts/test.sh runs the tests again under ASan + UBSan) slow
// every handler several-fold, so there the checks run for coverage with a looser bound.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr double kToleranceMs = 5.0;
#else
constexpr double kToleranceMs = 1.0;
#endif

struct RunOutput {
  Plan plan;
  RunResult result;
  std::vector<Metrics> metrics;
};

RunOutput run(const Workload& workload, const std::vector<TargetSpec>& targets) {
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  RunOutput out;
  out.plan = build_plan(workload, builder);
  RunOptions options;
  options.timeout = std::chrono::seconds(20);
  options.body.cache_retention = workload.cache_retention;  // as `tern bench` sets it
  auto result = run_benchmark(out.plan, targets, options);
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().message);
  out.result = std::move(*result);
  count_client_tokens(out.result, builder);
  out.metrics = compute_metrics(out.result, out.plan, targets, workload.slo);
  return out;
}

TargetSpec target_for(const FixtureServer& server, ApiKind api = ApiKind::kChat) {
  TargetSpec target;
  target.name = "fixture";
  target.url = server.base_url();
  target.model = "fixture";
  target.api = api;
  return target;
}

// A fixture that answers quickly (2 ms to the first token, 1 ms between tokens): for the tests that
// check what the client sends and counts rather than its timing.
FixtureConfig quick_fixture() {
  FixtureConfig config;
  config.ttft_ms = 2;
  config.itl_ms = 1;
  return config;
}

Workload closed_loop(int concurrency, int requests, int input_tokens, int output_tokens) {
  Workload workload;
  workload.input_tokens = LengthDistribution::fixed(input_tokens);
  workload.output_tokens = LengthDistribution::fixed(output_tokens);
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kConcurrency;
  stage.arrival.concurrency = concurrency;
  stage.num_requests = requests;
  workload.stages = {stage};
  return workload;
}

/// The client's figures beside the server's own account of the same requests, matched by prompt text.
/// Times in ms. `lag` is, for every content chunk, when the client recorded it minus when the server
/// wrote it (same steady clock); the other pairs are per request (TTFT, E2E, TPOT) or per gap (ITL).
struct TruthComparison {
  std::vector<double> lag;
  std::vector<double> measured_ttft, true_ttft, measured_e2e, true_e2e, measured_itl, true_itl;
  std::vector<double> measured_itl_token, true_itl_token, measured_tpot, true_tpot;
  int max_output_tokens = 0;
};

TruthComparison compare_with_server(const RunOutput& out, const FixtureServer& server, size_t target = 0) {
  std::map<std::string, testing::FixtureRequestLog> by_input;
  for (testing::FixtureRequestLog& entry : server.log()) by_input[entry.last_input] = std::move(entry);
  const int tokens_per_chunk = server.config().tokens_per_chunk;
  TruthComparison comparison;
  for (const RequestRecord& record : out.result.records) {
    if (record.target != target || !record.is_ok()) continue;
    const PlannedTurn& turn = out.plan.stages[record.stage]->session(record.session)->turns[record.turn];
    const testing::FixtureRequestLog& entry = by_input.at(turn.user_text);
    EXPECT_EQ(record.chunk_ns.size(), entry.chunk_write_ns.size());
    const size_t num_chunks = std::min(record.chunk_ns.size(), entry.chunk_write_ns.size());
    if (num_chunks == 0) continue;
    const int64_t epoch = out.result.epoch_steady_ns, scheduled = epoch + record.scheduled_ns;
    for (size_t i = 0; i < num_chunks; ++i) comparison.lag.push_back((epoch + record.chunk_ns[i] - entry.chunk_write_ns[i]) / 1e6);
    comparison.lag.push_back((epoch + record.end_ns - entry.last_write_ns) / 1e6);
    comparison.measured_ttft.push_back(ttft_ms_of(record));
    comparison.true_ttft.push_back((entry.chunk_write_ns.front() - scheduled) / 1e6);
    comparison.measured_e2e.push_back(e2e_ms_of(record));
    comparison.true_e2e.push_back((entry.last_write_ns - scheduled) / 1e6);
    for (size_t i = 1; i < num_chunks; ++i) {
      comparison.measured_itl.push_back((record.chunk_ns[i] - record.chunk_ns[i - 1]) / 1e6);
      comparison.true_itl.push_back((entry.chunk_write_ns[i] - entry.chunk_write_ns[i - 1]) / 1e6);
    }
    const int num_tokens = entry.num_output_tokens;
    comparison.max_output_tokens = std::max(comparison.max_output_tokens, num_tokens);
    if (num_tokens >= 2) {
      comparison.measured_tpot.push_back(tpot_ms_of(record));
      comparison.true_tpot.push_back((entry.last_write_ns - entry.chunk_write_ns.front()) / 1e6 / (num_tokens - 1));
    }
  }
  // Per-token ITL splits a chunk's gap over the tokens it carried (full chunks here, by construction).
  for (double gap : comparison.measured_itl) comparison.measured_itl_token.push_back(gap / tokens_per_chunk);
  for (double gap : comparison.true_itl) comparison.true_itl_token.push_back(gap / tokens_per_chunk);
  return comparison;
}

/// Whether p50 and p99 of `measured` are within `tolerance_ms` of the truth's; prints both.
bool is_within(const std::vector<double>& measured, const std::vector<double>& truth, double tolerance_ms, const char* what) {
  const Summary measured_summary = summarize(measured), true_summary = summarize(truth);
  std::printf("%-9s measured p50 %.3f p99 %.3f | server truth p50 %.3f p99 %.3f ms\n", what, measured_summary.p50,
              measured_summary.p99, true_summary.p50, true_summary.p99);
  return std::abs(measured_summary.p50 - true_summary.p50) < tolerance_ms &&
         std::abs(measured_summary.p99 - true_summary.p99) < tolerance_ms;
}

/// The client against the server's truth. The per-chunk lag can never be negative (the client cannot
/// see a chunk before it was written: a hard check of the clocks and the matching); its p50 and p99 must
/// be under the tolerance. TTFT, ITL and E2E are one or two chunk times each, so each is within the
/// tolerance of the truth; TPOT divides a difference of two chunk times by the tokens between them.
bool matches_server_truth(const TruthComparison& truth, bool check_per_token = false) {
  EXPECT_FALSE(truth.lag.empty());
  const Summary lag = summarize(truth.lag);
  const double min_lag = *std::min_element(truth.lag.begin(), truth.lag.end());
  EXPECT_GE(min_lag, 0.0) << "a chunk was recorded by the client before the server wrote it";
  std::printf("chunk lag p50 %.3f p99 %.3f max %.3f ms\n", lag.p50, lag.p99, lag.max);
  bool is_ok = lag.p50 < kToleranceMs && lag.p99 < kToleranceMs;
  is_ok = is_within(truth.measured_ttft, truth.true_ttft, kToleranceMs, "TTFT") && is_ok;
  is_ok = is_within(truth.measured_itl, truth.true_itl, kToleranceMs, "ITL") && is_ok;
  is_ok = is_within(truth.measured_e2e, truth.true_e2e, kToleranceMs, "E2E") && is_ok;
  if (check_per_token) {
    const double token_bound = kToleranceMs / std::max(1, truth.max_output_tokens - 1);
    is_ok = is_within(truth.measured_itl_token, truth.true_itl_token, kToleranceMs, "ITL/token") && is_ok;
    is_ok = is_within(truth.measured_tpot, truth.true_tpot, std::max(token_bound, 1e-3), "TPOT") && is_ok;
  }
  return is_ok;
}

/// Timing checks share a 2-core machine with builds and other tests: a process that takes the core from the
/// client thread for a few ms shows up at p99 and is not the client's error. So a timing check passes if
/// one of five runs (under a second each) is within tolerance; a client that is really off fails them all.
constexpr int kTimingAttempts = 5;

TEST(BenchFixture, LatenciesMatchWhatTheServerDid) {
  FixtureConfig config;
  config.ttft_ms = 30;
  config.itl_ms = 4;
  const int output_tokens = 20;
  RunOutput out;
  bool is_accurate = false;
  for (int attempt = 0; attempt < kTimingAttempts && !is_accurate; ++attempt) {
    FixtureServer fresh(config);  // a fresh log per attempt
    fresh.start();
    out = run(closed_loop(16, 96, 32, output_tokens), {target_for(fresh)});
    ASSERT_EQ(out.metrics.size(), 1u);
    ASSERT_EQ(out.metrics[0].num_ok, 96u);
    is_accurate = matches_server_truth(compare_with_server(out, fresh), true);
  }
  EXPECT_TRUE(is_accurate) << "the client is off the server's truth by over " << kToleranceMs << " ms in all "
                           << kTimingAttempts << " runs";
  const Metrics& metrics = out.metrics[0];
  EXPECT_EQ(metrics.latency.itl_chunk_ms.count, 96u * (output_tokens - 1));
  // Usage: the fixture counts whitespace words, as the fallback prompt builder does.
  EXPECT_EQ(metrics.tokens.server_output_tokens, 96 * output_tokens);
  EXPECT_EQ(metrics.tokens.client_output_tokens, 96 * output_tokens);
  EXPECT_EQ(metrics.tokens.server_prompt_tokens, metrics.tokens.client_prompt_tokens);
  EXPECT_EQ(metrics.tokens.server_prompt_tokens, 96 * 32);
}

TEST(BenchFixture, PerTokenInterTokenLatencySplitsMultiTokenChunks) {
  FixtureConfig config;
  config.ttft_ms = 10;
  config.itl_ms = 8;
  config.tokens_per_chunk = 4;
  bool is_accurate = false;
  for (int attempt = 0; attempt < kTimingAttempts && !is_accurate; ++attempt) {
    FixtureServer server(config);
    server.start();
    RunOutput out = run(closed_loop(4, 16, 8, 16), {target_for(server, ApiKind::kCompletions)});
    const Metrics& metrics = out.metrics[0];
    ASSERT_EQ(metrics.num_ok, 16u);
    ASSERT_EQ(metrics.latency.itl_chunk_ms.count, 16u * 3);   // 16 tokens in 4 chunks: 3 gaps
    ASSERT_EQ(metrics.latency.itl_token_ms.count, 16u * 12);  // each gap counted once per token it carried
    // The per-token figures are the chunk gaps split 4 ways, exactly, in the metrics too.
    EXPECT_NEAR(metrics.latency.itl_token_ms.p50 * 4, metrics.latency.itl_chunk_ms.p50, 1e-9);
    is_accurate = matches_server_truth(compare_with_server(out, server), true);
  }
  EXPECT_TRUE(is_accurate) << "per-token latencies off the server's truth in all " << kTimingAttempts << " runs";
}

TEST(BenchFixture, OpenLoopPoissonSendsFollowTheSchedule) {
  FixtureConfig config;
  config.ttft_ms = 5;
  config.itl_ms = 2;
  Workload workload;
  workload.input_tokens = LengthDistribution::fixed(16);
  workload.output_tokens = LengthDistribution::fixed(8);
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kPoisson;
  stage.arrival.rate = 200;
  stage.num_requests = 300;
  workload.stages = {stage};
  bool is_accurate = false;
  for (int attempt = 0; attempt < kTimingAttempts && !is_accurate; ++attempt) {
    FixtureServer server(config);
    server.start();
    RunOutput out = run(workload, {target_for(server)});
    ASSERT_EQ(out.result.records.size(), 300u);
    // Each send was scheduled at its planned offset from the stage start (exact: no clock involved)...
    const int64_t stage_start = out.result.stages[0].start_ns;
    std::vector<double> lateness_ms, server_lag_ms;
    for (const RequestRecord& record : out.result.records) {
      const double planned_ms = out.plan.stages[0]->session(record.session)->arrival_s * 1e3;
      ASSERT_NEAR((record.scheduled_ns - stage_start) / 1e6, planned_ms, 1e-3);
      ASSERT_GE(record.dispatched_ns, record.scheduled_ns);
      lateness_ms.push_back((record.dispatched_ns - record.scheduled_ns) / 1e6);
    }
    // ...went out then, and reached the server then (the server's arrival stamps, same steady clock).
    std::vector<testing::FixtureRequestLog> log = server.log();
    ASSERT_EQ(log.size(), 300u);
    std::vector<int64_t> scheduled;
    for (const RequestRecord& record : out.result.records) scheduled.push_back(out.result.epoch_steady_ns + record.scheduled_ns);
    std::sort(scheduled.begin(), scheduled.end());
    std::sort(log.begin(), log.end(), [](const auto& a, const auto& b) { return a.arrival_ns < b.arrival_ns; });
    for (size_t i = 0; i < log.size(); ++i) server_lag_ms.push_back((log[i].arrival_ns - scheduled[i]) / 1e6);
    const Summary lateness = summarize(lateness_ms), server_lag = summarize(server_lag_ms);
    std::printf("send lateness p50 %.3f p95 %.3f p99 %.3f ms; arrival at server p50 %.3f p95 %.3f p99 %.3f ms\n",
                lateness.p50, lateness.p95, lateness.p99, server_lag.p50, server_lag.p95, server_lag.p99);
    // Open-loop latency still matches the truth. The schedule is held at p95; its p99 is the machine's
    // (another process holding the core when a send is due delays the timer), and it is charged to
    // latency anyway, which the truth check covers.
    const bool truth_ok = matches_server_truth(compare_with_server(out, server));
    is_accurate = lateness.p95 < kToleranceMs && server_lag.p95 < kToleranceMs && truth_ok;
  }
  EXPECT_TRUE(is_accurate) << "open-loop schedule or latencies off by over " << kToleranceMs << " ms in all "
                           << kTimingAttempts << " runs";
}

/// Two fixture servers, one answering 20 ms later than the other, started, with their targets.
struct FastAndSlow {
  static FixtureConfig config(double ttft_ms) {
    FixtureConfig c;
    c.ttft_ms = ttft_ms;
    c.itl_ms = 2;
    return c;
  }
  FixtureServer fast{config(5)}, slow{config(25)};
  TargetSpec fast_target, slow_target;
  FastAndSlow() {
    fast.start();
    slow.start();
    fast_target = target_for(fast);
    slow_target = target_for(slow);
    fast_target.name = "fast";
    slow_target.name = "slow";
  }
};

TEST(BenchFixture, TwoTargetsSideBySideGetTheSameTraffic) {
  bool is_accurate = false;
  for (int attempt = 0; attempt < kTimingAttempts && !is_accurate; ++attempt) {
    FastAndSlow servers;
    FixtureServer &fast = servers.fast, &slow = servers.slow;
    RunOutput out = run(closed_loop(4, 24, 16, 8), {servers.fast_target, servers.slow_target});
    ASSERT_EQ(out.metrics.size(), 2u);
    EXPECT_EQ(out.metrics[0].target_name, "fast");
    EXPECT_EQ(out.metrics[0].num_ok, 24u);
    EXPECT_EQ(out.metrics[1].num_ok, 24u);
    EXPECT_EQ(out.metrics[0].tokens.server_prompt_tokens, out.metrics[1].tokens.server_prompt_tokens);
    // Each target's figures are its own server's (not mixed up), and the slower one is seen as slower.
    EXPECT_GT(out.metrics[1].latency.ttft_ms.p50, out.metrics[0].latency.ttft_ms.p50);
    const bool fast_ok = matches_server_truth(compare_with_server(out, fast, 0));
    const bool slow_ok = matches_server_truth(compare_with_server(out, slow, 1));
    is_accurate = fast_ok && slow_ok;
  }
  EXPECT_TRUE(is_accurate) << "side-by-side latencies off their servers' truth in all " << kTimingAttempts << " runs";
}

TEST(BenchFixture, SequentialTargetsAreLoadedOneAtATime) {
  FastAndSlow servers;
  FixtureServer &fast = servers.fast, &slow = servers.slow;
  const TargetSpec &fast_target = servers.fast_target, &slow_target = servers.slow_target;
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  RunOutput out;
  out.plan = build_plan(closed_loop(4, 24, 16, 8), builder);
  RunOptions options;
  options.timeout = std::chrono::seconds(20);
  std::vector<size_t> announced;
  auto result = run_benchmark_sequential(out.plan, {fast_target, slow_target}, options,
                                         [&](size_t target) { announced.push_back(target); });
  ASSERT_TRUE(result.has_value()) << result.error().message;
  out.result = std::move(*result);
  count_client_tokens(out.result, builder);
  out.metrics = compute_metrics(out.result, out.plan, {fast_target, slow_target}, {});
  EXPECT_EQ(announced, (std::vector<size_t>{0, 1}));
  // Never both at once: the slow server's first request arrived after the fast server's last answer.
  const std::vector<testing::FixtureRequestLog> fast_log = fast.log(), slow_log = slow.log();
  ASSERT_EQ(fast_log.size(), 24u);
  ASSERT_EQ(slow_log.size(), 24u);
  int64_t fast_last = 0, slow_first = INT64_MAX;
  for (const auto& entry : fast_log) fast_last = std::max(fast_last, entry.last_write_ns);
  for (const auto& entry : slow_log) slow_first = std::min(slow_first, entry.arrival_ns);
  EXPECT_LT(fast_last, slow_first);
  // One report as if side by side: both targets, the same traffic, each against its own server's truth
  // (the merge moved the second run's clock; latencies, being differences, must not change).
  ASSERT_EQ(out.metrics.size(), 2u);
  EXPECT_EQ(out.metrics[0].num_ok, 24u);
  EXPECT_EQ(out.metrics[1].num_ok, 24u);
  EXPECT_EQ(out.metrics[0].tokens.server_prompt_tokens, out.metrics[1].tokens.server_prompt_tokens);
  for (const RequestRecord& record : out.result.records) EXPECT_GE(record.scheduled_ns, out.result.stages[0].start_ns);
  EXPECT_GT(out.metrics[1].latency.ttft_ms.p50, out.metrics[0].latency.ttft_ms.p50);
  // Per request, TTFT is unchanged by the shift: compare with each server's own log (same prompts).
  std::map<std::string, double> slow_truth_ttft;
  for (const auto& entry : slow_log) slow_truth_ttft[entry.last_input] = (entry.first_write_ns - entry.arrival_ns) / 1e6;
  for (const RequestRecord& record : out.result.records) {
    if (record.target != 1) continue;
    const PlannedTurn& turn = out.plan.stages[record.stage]->session(record.session)->turns[record.turn];
    // The client's TTFT includes sending; the server's starts when the request was read: never shorter.
    EXPECT_GE(ttft_ms_of(record), slow_truth_ttft.at(turn.user_text));
  }
}

TEST(BenchFixture, SharedPrefixesShowUpAsCachedTokensAndLowerEffectiveCost) {
  FixtureServer server(quick_fixture());
  server.start();
  Workload workload = closed_loop(2, 40, 32, 4);
  workload.prefix = PrefixSpec{2, 128, 1.0, 1.0};
  TargetSpec target = target_for(server, ApiKind::kCompletions);
  target.price.input_per_mtok = 3.0;
  target.price.cached_input_per_mtok = 0.3;
  target.price.output_per_mtok = 15.0;
  RunOutput out = run(workload, {target});
  const Metrics& metrics = out.metrics[0];
  EXPECT_EQ(metrics.num_ok, 40u);
  EXPECT_EQ(metrics.tokens.server_prompt_tokens, 40 * (128 + 32));
  // All but the first request of each group hit the 128-word prefix (8 blocks of 16).
  EXPECT_EQ(metrics.tokens.cached_tokens, (40 - 2) * 128);
  ASSERT_TRUE(metrics.cost.is_available);
  const double prompt = 40 * 160, cached = 38 * 128, output = 40 * 4;
  EXPECT_NEAR(metrics.cost.list_usd, (prompt * 3 + output * 15) / 1e6, 1e-12);
  EXPECT_NEAR(metrics.cost.effective_usd, ((prompt - cached) * 3 + cached * 0.3 + output * 15) / 1e6, 1e-12);
  EXPECT_GT(metrics.cost.saving_fraction, 0.5);
}

TEST(BenchFixture, MultiTurnSessionsCarryTheirHistory) {
  FixtureServer server(quick_fixture());
  server.start();
  Workload workload = closed_loop(2, 12, 10, 5);
  workload.sessions.num_turns = 3;
  RunOutput out = run(workload, {target_for(server)});
  ASSERT_EQ(out.result.records.size(), 12u);
  for (const RequestRecord& record : out.result.records) {
    ASSERT_TRUE(record.is_ok()) << record.error_detail;
    // Turn k sends k earlier questions (10 words) and answers (5 words) plus its own question.
    EXPECT_EQ(record.usage.prompt_tokens, static_cast<int64_t>(10 + record.turn * 15));
    EXPECT_EQ(record.client_prompt_tokens, record.usage.prompt_tokens);
  }
}

// Agent-shaped sessions: each turn waits its own think time (drawn from a range) after the previous
// answer, and with cache_retention every request asks the server to retain its session's prompt.
TEST(BenchFixture, ThinkTimesFromARangeAndCacheRetentionReachTheServer) {
  FixtureServer server(quick_fixture());
  server.start();
  Workload workload = closed_loop(2, 9, 10, 5);
  workload.sessions = {.num_turns = 3, .think_time_ms = 20, .think_time_max_ms = 80};
  workload.cache_retention = "24h";
  RunOutput out = run(workload, {target_for(server)});
  ASSERT_EQ(out.result.records.size(), 9u);
  std::set<double> pauses;
  for (const RequestRecord& record : out.result.records) {
    ASSERT_TRUE(record.is_ok()) << record.error_detail;
    const PlannedTurn& turn = out.plan.stages[record.stage]->session(record.session)->turns[record.turn];
    if (record.turn == 0) {
      EXPECT_EQ(turn.think_ms, 0);
      continue;
    }
    EXPECT_GE(turn.think_ms, 20);
    EXPECT_LE(turn.think_ms, 80);
    pauses.insert(turn.think_ms);
    const RequestRecord* previous = nullptr;
    for (const RequestRecord& other : out.result.records) {
      if (other.session == record.session && other.stage == record.stage && other.turn + 1 == record.turn) previous = &other;
    }
    ASSERT_NE(previous, nullptr);
    EXPECT_GE(record.scheduled_ns - previous->end_ns, static_cast<int64_t>(turn.think_ms * 1e6) - 1'000'000);
  }
  EXPECT_GT(pauses.size(), 3u) << "each pause drawn anew";
  const auto log = server.log();
  ASSERT_EQ(log.size(), 9u);
  for (const testing::FixtureRequestLog& request : log) {
    const auto body = nlohmann::json::parse(request.body);
    EXPECT_EQ(body["prompt_cache_retention"], "24h");
    EXPECT_TRUE(body["prompt_cache_key"].get<std::string>().starts_with("s0-"));
  }
}

// Ctrl-C: nothing new is sent (no turn, session or stage), what is in flight finishes, and the result
// is what was measured, marked interrupted. Sessions waiting out a think time end there.
TEST(BenchFixture, SigintStopsSendingAndKeepsWhatWasMeasured) {
  FixtureServer server(quick_fixture());
  server.start();
  Workload workload = closed_loop(3, 3000, 10, 5);
  workload.sessions = {.num_turns = 4, .think_time_ms = 30, .think_time_max_ms = 60};
  workload.stages.push_back(workload.stages[0]);  // a second stage that must never start
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  Plan plan = build_plan(workload, builder);
  RunOptions options;
  options.timeout = std::chrono::seconds(20);
  options.stop_on_signals = true;
  options.progress_interval = std::chrono::milliseconds(5);
  bool raised = false;
  options.on_progress = [&](const RunProgress& progress) {
    if (!raised && progress.num_finished >= 10) {
      raised = true;
      std::raise(SIGINT);
    }
  };
  const auto started = std::chrono::steady_clock::now();
  auto result = run_benchmark(plan, {target_for(server)}, options);
  ASSERT_TRUE(result.has_value()) << result.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10)) << "3000 planned; the run must stop early";
  ASSERT_TRUE(raised);
  EXPECT_TRUE(result->interrupted);
  ASSERT_EQ(result->stages.size(), 1u) << "no stage starts after the signal";
  EXPECT_GE(result->records.size(), 10u);
  EXPECT_LT(result->records.size(), 100u);
  for (const RequestRecord& record : result->records) {
    EXPECT_TRUE(record.is_ok()) << "in flight at the signal, and allowed to finish: " << record.error_detail;
    EXPECT_GE(record.end_ns, 0);
  }
  EXPECT_EQ(server.log().size(), result->records.size()) << "every request sent is in the result";
  const std::vector<Metrics> metrics = compute_metrics(*result, plan, {target_for(server)}, workload.slo);
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].num_ok, result->records.size());
}

TEST(BenchFixture, ErrorsAreCountedByKind) {
  FixtureServer server(FixtureConfig{});
  server.start();
  Workload workload = closed_loop(2, 12, 8, 4);
  workload.models = {{"fixture", 1}, {"fail-500", 1}, {"fail-midstream", 1}};
  RunOutput out = run(workload, {target_for(server)});
  Metrics metrics = out.metrics[0];
  EXPECT_EQ(metrics.num_requests, 12u);
  EXPECT_EQ(metrics.num_ok + metrics.num_failed, 12u);
  EXPECT_GT(metrics.errors_by_kind["http_500"], 0u);
  EXPECT_GT(metrics.errors_by_kind["server_error"], 0u);
  EXPECT_EQ(metrics.num_ok, 12u - metrics.errors_by_kind["http_500"] - metrics.errors_by_kind["server_error"]);
}

TEST(BenchFixture, UnreachableTargetFailsWithConnectErrors) {
  uint16_t free_port = 0;
  {
    FixtureServer server(FixtureConfig{});
    free_port = server.start();
  }
  TargetSpec target;
  target.name = "down";
  target.url = fmt::format("http://127.0.0.1:{}/v1", free_port);
  target.model = "x";
  RunOutput out = run(closed_loop(2, 4, 8, 4), {target});
  EXPECT_EQ(out.metrics[0].num_failed, 4u);
  EXPECT_EQ(out.metrics[0].errors_by_kind.at("connect"), 4u);
}

TEST(BenchFixture, GoodputCountsOnlyRequestsWithinTheSlo) {
  FixtureConfig config;
  config.ttft_ms = 20;
  config.itl_ms = 1;
  FixtureServer server(config);
  server.start();
  Workload workload = closed_loop(2, 8, 8, 4);
  // The fixture's timer never fires early, so no first token can come within 10 ms: every request misses.
  workload.slo.ttft_ms = 10;
  RunOutput missed = run(workload, {target_for(server)});
  EXPECT_EQ(missed.metrics[0].num_good, 0u);
  // With an SLO between the fastest and the slowest measured TTFT of one run, goodput counts exactly the
  // requests at or under it (measured against the run's own records, not against the configured delay).
  RunOutput met = run(workload, {target_for(server)});
  std::vector<double> ttfts;
  for (const RequestRecord& record : met.result.records) ttfts.push_back(ttft_ms_of(record));
  std::sort(ttfts.begin(), ttfts.end());
  ASSERT_EQ(ttfts.size(), 8u);
  workload.slo.ttft_ms = ttfts[3];
  const std::vector<Metrics> metrics = compute_metrics(met.result, met.plan, {target_for(server)}, workload.slo);
  const auto expected_good = static_cast<size_t>(std::count_if(ttfts.begin(), ttfts.end(), [&](double t) { return t <= ttfts[3]; }));
  EXPECT_EQ(metrics[0].num_good, expected_good);
  EXPECT_GE(expected_good, 4u);
  workload.slo.ttft_ms = ttfts.back();
  const std::vector<Metrics> all_good = compute_metrics(met.result, met.plan, {target_for(server)}, workload.slo);
  EXPECT_EQ(all_good[0].num_good, 8u);
  EXPECT_NEAR(all_good[0].goodput, all_good[0].request_throughput, 1e-9);
}

}  // namespace
}  // namespace tern::bench
