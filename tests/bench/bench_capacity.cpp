// bench_capacity: can one client thread drive 1,000 concurrent streams at >= 5,000 tokens/s without
// distorting its own measurements? Runs `tern bench`'s runner (on this thread) against the fixture server
// (on its own thread, same process and clock) and prints the throughput achieved, the client thread's CPU
// use, and the measurement error: the client's TTFT / ITL / E2E minus what the server actually did.
//
//   build/tests/bench/bench_capacity [--streams 1000] [--requests 3000] [--tokens 64] [--ttft-ms 100] [--itl-ms 100]

#include <time.h>

#include <cstdio>
#include <map>

#include <CLI/CLI.hpp>

#include "bench/metrics.h"
#include "bench/plan.h"
#include "bench/runner.h"
#include "bench/stats.h"
#include "fixture_server.h"

using namespace tern::bench;

namespace {

double thread_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

void print_error(const char* what, std::vector<double> errors) {
  const Summary summary = summarize(std::move(errors));
  std::printf("  %-4s client - server: p50 %+.3f  p99 %+.3f  max %+.3f ms  (%zu samples)\n", what, summary.p50, summary.p99,
              summary.max, summary.count);
}

}  // namespace

int main(int argc, char** argv) {
  int num_streams = 1000, num_requests = 3000, num_tokens = 64;
  testing::FixtureConfig config;
  config.ttft_ms = 100;
  config.itl_ms = 100;
  CLI::App app{"Load capacity of the tern bench client"};
  app.add_option("--streams", num_streams, "Concurrent streams (closed loop)")->capture_default_str();
  app.add_option("--requests", num_requests, "Requests in all")->capture_default_str();
  app.add_option("--tokens", num_tokens, "Output tokens per request")->capture_default_str();
  app.add_option("--ttft-ms", config.ttft_ms, "Fixture time to first token")->capture_default_str();
  app.add_option("--itl-ms", config.itl_ms, "Fixture inter-token latency")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  testing::FixtureServer server(config);
  server.start();
  Workload workload;
  workload.input_tokens = LengthDistribution::fixed(64);
  workload.output_tokens = LengthDistribution::fixed(num_tokens);
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kConcurrency;
  stage.arrival.concurrency = num_streams;
  stage.num_requests = num_requests;
  workload.stages = {stage};
  TargetSpec target;
  target.name = "fixture";
  target.url = server.base_url();
  target.model = "fixture";
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  Plan plan = build_plan(workload, builder);
  RunOptions options;
  options.timeout = std::chrono::seconds(120);

  const double cpu_before = thread_cpu_seconds();
  auto result = run_benchmark(plan, {target}, options);
  const double client_cpu_s = thread_cpu_seconds() - cpu_before;
  if (!result) {
    std::fprintf(stderr, "error: %s\n", result.error().message.c_str());
    return 1;
  }
  count_client_tokens(*result, builder);
  const std::vector<Metrics> metrics = compute_metrics(*result, plan, {target}, {});
  const Metrics& m = metrics[0];

  // Measurement error against the server's own chunk write times, matched by prompt.
  std::map<std::string, testing::FixtureRequestLog> by_input;
  for (testing::FixtureRequestLog& entry : server.log()) by_input[entry.last_input] = std::move(entry);
  std::vector<double> ttft_error, itl_error, e2e_error;
  for (const RequestRecord& record : result->records) {
    if (!record.is_ok()) continue;
    const auto& entry = by_input.at(plan.stages[0]->session(record.session)->turns[record.turn].user_text);
    const int64_t epoch = result->epoch_steady_ns;
    ttft_error.push_back((epoch + record.first_token_ns - entry.chunk_write_ns.front()) / 1e6);
    e2e_error.push_back((epoch + record.end_ns - entry.last_write_ns) / 1e6);
    for (size_t i = 1; i < record.chunk_ns.size() && i < entry.chunk_write_ns.size(); ++i) {
      itl_error.push_back(((record.chunk_ns[i] - record.chunk_ns[i - 1]) - (entry.chunk_write_ns[i] - entry.chunk_write_ns[i - 1])) / 1e6);
    }
  }
  std::printf("streams %d, requests %zu ok / %zu, %d tokens each, fixture ttft %.0f ms itl %.0f ms\n", num_streams, m.num_ok,
              m.num_requests, num_tokens, config.ttft_ms, config.itl_ms);
  std::printf("  wall %.2f s, %.0f output tokens/s, %.1f requests/s\n", m.duration_s, m.output_token_throughput, m.request_throughput);
  std::printf("  client thread CPU %.2f s = %.0f%% of one core (%.1f us per token)\n", client_cpu_s,
              100 * client_cpu_s / m.duration_s, 1e6 * client_cpu_s / std::max<int64_t>(1, m.tokens.server_output_tokens));
  std::printf("  measured TTFT p50 %.2f p99 %.2f ms, ITL p50 %.2f p99 %.2f ms, E2E p50 %.2f p99 %.2f ms\n", m.latency.ttft_ms.p50,
              m.latency.ttft_ms.p99, m.latency.itl_chunk_ms.p50, m.latency.itl_chunk_ms.p99, m.latency.e2e_ms.p50, m.latency.e2e_ms.p99);
  print_error("TTFT", ttft_error);
  print_error("ITL", itl_error);
  print_error("E2E", e2e_error);
  return m.num_failed == 0 ? 0 : 1;
}
