// Unit tests of the pieces of `tern bench` that need no server: SSE framing, chunk parsing, statistics,
// workload parsing, arrival processes, plans, cost.

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "http/chunked_decoder.h"
#include "bench/cost.h"
#include "bench/capacity.h"
#include "bench/metrics.h"
#include "bench/profile.h"
#include "bench/report.h"
#include "http/client.h"
#include "bench/api.h"
#include "bench/plan.h"
#include "http/sse_parser.h"
#include "bench/stats.h"
#include "bench/workload.h"

namespace tern::bench {
namespace {

using http::ChunkedDecoder;
using http::parse_url;
using http::SseParser;

TEST(SseParser, EventsSurviveArbitrarySplits) {
  const std::string stream = ": ping\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\nevent: x\ndata: [DONE]\n\n";
  for (size_t piece = 1; piece <= stream.size(); ++piece) {
    SseParser parser;
    std::vector<std::string> events;
    for (size_t start = 0; start < stream.size(); start += piece) {
      for (const std::string& data : parser.feed(std::string_view(stream).substr(start, piece))) events.push_back(data);
    }
    ASSERT_EQ(events.size(), 3u) << "piece " << piece;
    EXPECT_EQ(events[0], "{\"a\":1}");
    EXPECT_EQ(events[1], "line1\nline2");
    EXPECT_EQ(events[2], "[DONE]");
  }
}

TEST(SseParser, FlushReturnsAnUnterminatedEvent) {
  SseParser parser;
  EXPECT_TRUE(parser.feed("data: tail").empty());
  EXPECT_EQ(parser.flush(), "tail");
}

TEST(OpenAiStream, ParsesTextUsageErrorsAndDone) {
  auto chunk = parse_stream_chunk(R"({"choices":[{"delta":{"content":"Hi"}}]})", ApiKind::kChat);
  ASSERT_TRUE(chunk);
  EXPECT_EQ(chunk->text, "Hi");
  chunk = parse_stream_chunk(R"({"choices":[{"text":" there"}]})", ApiKind::kCompletions);
  EXPECT_EQ(chunk->text, " there");
  chunk = parse_stream_chunk(
      R"({"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":8}}})",
      ApiKind::kChat);
  ASSERT_TRUE(chunk->usage);
  EXPECT_EQ(chunk->usage->prompt_tokens, 10);
  EXPECT_EQ(chunk->usage->completion_tokens, 3);
  EXPECT_EQ(chunk->usage->cached_tokens, 8);
  EXPECT_EQ(chunk->usage->cache_write_tokens, -1);
  chunk = parse_stream_chunk(R"({"error":{"message":"boom"}})", ApiKind::kChat);
  ASSERT_TRUE(chunk->error);
  EXPECT_EQ(chunk->error->message, "boom");
  EXPECT_TRUE(parse_stream_chunk("[DONE]", ApiKind::kChat)->is_end);
  EXPECT_FALSE(parse_stream_chunk("{not json", ApiKind::kChat));
}

TEST(OpenAiStream, RequestBodyAsksForStreamedUsage) {
  RequestContent content;
  content.messages = {{"user", "hello"}};
  RequestBodyOptions options;
  options.max_tokens = 7;
  const auto body = nlohmann::json::parse(build_request_body(ApiKind::kChat, "m", content, options));
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["max_tokens"], 7);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["messages"][0]["content"], "hello");
  EXPECT_FALSE(body.contains("ignore_eos"));
}

// Anthropic Messages: the prompt side of usage comes in message_start, the output count in
// message_delta, text in content_block_delta, the end in message_stop.
TEST(MessagesStream, ParsesEventsAndMergesUsage) {
  auto start = parse_stream_chunk(
      R"({"type":"message_start","message":{"id":"m","usage":{"input_tokens":5,"cache_read_input_tokens":100,)"
      R"("cache_creation_input_tokens":20,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":20},"output_tokens":0}}})",
      ApiKind::kMessages);
  ASSERT_TRUE(start);
  ASSERT_TRUE(start->usage);
  EXPECT_EQ(start->usage->prompt_tokens, 125) << "input_tokens counts only what was neither read nor written";
  EXPECT_EQ(start->usage->cached_tokens, 100);
  EXPECT_EQ(start->usage->cache_write_tokens, 20);
  EXPECT_EQ(start->usage->cache_write_1h_tokens, 20);
  auto delta = parse_stream_chunk(R"({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}})",
                                  ApiKind::kMessages);
  EXPECT_EQ(delta->text, "Hi");
  auto end = parse_stream_chunk(R"({"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}})",
                                ApiKind::kMessages);
  ASSERT_TRUE(end->usage);
  wire::UsageReport usage = *start->usage;
  usage.merge(*end->usage);
  EXPECT_EQ(usage.prompt_tokens, 125) << "message_delta without input fields keeps message_start's";
  EXPECT_EQ(usage.cached_tokens, 100);
  EXPECT_EQ(usage.completion_tokens, 7);
  EXPECT_TRUE(parse_stream_chunk(R"({"type":"message_stop"})", ApiKind::kMessages)->is_end);
  EXPECT_FALSE(parse_stream_chunk(R"({"type":"ping"})", ApiKind::kMessages)->is_end);
  const auto error = parse_stream_chunk(R"({"type":"error","error":{"type":"overloaded_error","message":"busy"}})", ApiKind::kMessages);
  ASSERT_TRUE(error && error->error);
  EXPECT_EQ(error->error->message, "busy");
  EXPECT_EQ(error->error->type, "overloaded_error");
  EXPECT_FALSE(parse_stream_chunk(R"({"no":"type"})", ApiKind::kMessages));
  EXPECT_FALSE(parse_stream_chunk("[DONE]", ApiKind::kMessages)) << "not a Messages event";
}

TEST(MessagesStream, RequestBodyPutsTheSystemPromptApartAndMarksBreakpoints) {
  RequestContent content;
  content.messages = {{"system", "you are terse"}, {"user", "hello"}, {"assistant", "hi"}, {"user", "again"}};
  RequestBodyOptions options;
  options.max_tokens = 9;
  options.ignore_eos = true;
  auto body = nlohmann::json::parse(build_request_body(ApiKind::kMessages, "m", content, options));
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["max_tokens"], 9);
  EXPECT_EQ(body["stream"], true);
  EXPECT_FALSE(body.contains("stream_options")) << "not a Messages field";
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["system"][0]["text"], "you are terse");
  ASSERT_EQ(body["messages"].size(), 3u);
  EXPECT_EQ(body["messages"][1]["role"], "assistant");
  EXPECT_EQ(body["messages"][2]["content"][0]["text"], "again");
  EXPECT_FALSE(body.contains("cache_control"));
  EXPECT_FALSE(body["system"][0].contains("cache_control"));

  options.cache_retention = "5m";
  options.ignore_eos = false;
  body = nlohmann::json::parse(build_request_body(ApiKind::kMessages, "m", content, options));
  const nlohmann::json ttl = {{"type", "ephemeral"}, {"ttl", "5m"}};
  EXPECT_EQ(body["system"][0]["cache_control"], ttl) << "the shared system prompt is a breakpoint";
  EXPECT_EQ(body["cache_control"], ttl) << "and the whole conversation (top-level form)";
  EXPECT_FALSE(body.contains("ignore_eos"));
  EXPECT_FALSE(body.contains("prompt_cache_retention"));
}

TEST(CacheRetention, EachApiTakesItsOwnValues) {
  EXPECT_TRUE(check_cache_retention(ApiKind::kChat, ""));
  EXPECT_TRUE(check_cache_retention(ApiKind::kChat, "24h"));
  EXPECT_TRUE(check_cache_retention(ApiKind::kCompletions, "in_memory"));
  EXPECT_TRUE(check_cache_retention(ApiKind::kMessages, "5m"));
  EXPECT_TRUE(check_cache_retention(ApiKind::kMessages, "1h"));
  auto wrong = check_cache_retention(ApiKind::kChat, "5m");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("24h"), std::string::npos) << wrong.error().message;
  EXPECT_FALSE(check_cache_retention(ApiKind::kMessages, "24h"));
  EXPECT_TRUE(is_long_retention("1h"));
  EXPECT_TRUE(is_long_retention("24h"));
  EXPECT_FALSE(is_long_retention("5m"));
  EXPECT_FALSE(is_long_retention("in_memory"));
}

TEST(HttpUrl, ParsesHostPortAndPath) {
  auto endpoint = parse_url("http://127.0.0.1:8000/v1/");
  ASSERT_TRUE(endpoint);
  EXPECT_EQ(endpoint->host, "127.0.0.1");
  EXPECT_EQ(endpoint->port, 8000);
  EXPECT_EQ(endpoint->base_path, "/v1");
  EXPECT_EQ(parse_url("http://localhost")->port, 80);
  auto https = parse_url("https://api.example.com/v1");
  ASSERT_TRUE(https);
  EXPECT_TRUE(https->is_tls);
  EXPECT_EQ(https->port, 443);
  EXPECT_EQ(https->base_path, "/v1");
  EXPECT_FALSE(parse_url("ftp://host/"));
  EXPECT_FALSE(parse_url("http://host:99999/"));
}

TEST(Stats, PercentilesInterpolateLikeNumpy) {
  const Summary summary = summarize({4, 1, 3, 2});
  EXPECT_DOUBLE_EQ(summary.p50, 2.5);
  EXPECT_DOUBLE_EQ(summary.p90, 3.7);
  EXPECT_DOUBLE_EQ(summary.mean, 2.5);
  EXPECT_NEAR(summary.stdev, 1.118034, 1e-6);
  EXPECT_EQ(summarize({}).count, 0u);
}

TEST(Workload, ParsesEveryDistributionAndArrival) {
  const auto spec = nlohmann::json::parse(R"({
    "seed": 7,
    "input_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.5, "max": 2000},
    "output_tokens": {"dist": "uniform", "min": 10, "max": 20},
    "sweep": {"type": "poisson", "values": [1, 2, 4], "requests_per_stage": 50},
    "prefix": {"groups": 3, "length_tokens": 64, "zipf_s": 1.2},
    "sessions": {"turns": 2, "think_time_ms": 100},
    "models": [{"model": "base", "weight": 3}, {"model": "lora-a", "weight": 1}],
    "slo": {"ttft_ms": 500},
    "targets": [{"name": "a", "url": "http://127.0.0.1:1/v1", "model": "m", "api": "completions",
                 "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]
  })");
  auto workload = parse_workload(spec, "");
  ASSERT_TRUE(workload) << workload.error().message;
  EXPECT_EQ(workload->stages.size(), 3u);
  EXPECT_EQ(workload->stages[2].arrival.rate, 4);
  EXPECT_EQ(workload->targets[0].api, ApiKind::kCompletions);
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    const int output = workload->output_tokens.sample(rng);
    EXPECT_GE(output, 10);
    EXPECT_LE(output, 20);
    EXPECT_LE(workload->input_tokens.sample(rng), 2000);
  }
  // Round trip: the JSON a report records parses back to the same spec.
  auto again = parse_workload(workload_to_json(*workload), "");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(workload_to_json(*again), workload_to_json(*workload));
}

TEST(Workload, RejectsMistakesWithAMessage) {
  EXPECT_FALSE(parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "poisson"}, "requests": 5})"), ""));
  EXPECT_FALSE(parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "warp", "rate": 1}, "requests": 5})"), ""));
  EXPECT_FALSE(parse_workload(nlohmann::json::parse(R"({"input_tokens": {"dist": "normal", "mean": 5}})"), ""));
  EXPECT_FALSE(parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "concurrency", "concurrency": 2}})"), ""));
  // A duration alone bounds a closed loop too (requests are generated as the run needs them).
  EXPECT_TRUE(parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "concurrency", "concurrency": 2}, "duration_s": 5})"), ""));
  EXPECT_TRUE(parse_slo_flag("ttft=500ms,tpot=50ms,e2e=2s"));
  EXPECT_EQ(*parse_slo_flag("e2e=2s")->e2e_ms, 2000);
  EXPECT_FALSE(parse_slo_flag("speed=5"));
  EXPECT_EQ(*parse_price_flag("in=3,cached=0.3,out=15")->cached_input_per_mtok, 0.3);
  EXPECT_EQ(*parse_price_flag("in=3,write=3.75,write_1h=6")->cache_write_1h_per_mtok, 6);
  EXPECT_FALSE(parse_price_flag("in=abc"));
  EXPECT_FALSE(parse_workload(nlohmann::json::parse(R"({"cache_retention": "forever"})"), ""));
  EXPECT_TRUE(parse_workload(nlohmann::json::parse(R"({"cache_retention": "5m"})"), ""));
}

double coefficient_of_variation(const std::vector<double>& offsets) {
  std::vector<double> gaps;
  for (size_t i = 1; i < offsets.size(); ++i) gaps.push_back(offsets[i] - offsets[i - 1]);
  const Summary summary = summarize(gaps);
  return summary.stdev / summary.mean;
}

TEST(Arrivals, PoissonGammaConstantAndRampHaveTheirShape) {
  std::mt19937_64 rng(3);
  ArrivalSpec poisson;
  poisson.kind = ArrivalSpec::Kind::kPoisson;
  poisson.rate = 50;
  auto offsets = arrival_offsets(poisson, 20000, 0, rng);
  ASSERT_EQ(offsets.size(), 20000u);
  EXPECT_NEAR(offsets.back() / offsets.size(), 1.0 / 50, 0.02 / 50 * 2);  // mean gap within 2 %
  EXPECT_NEAR(coefficient_of_variation(offsets), 1.0, 0.03);             // exponential gaps: CV = 1
  ArrivalSpec gamma = poisson;
  gamma.kind = ArrivalSpec::Kind::kGamma;
  gamma.burstiness = 0.25;  // CV = 1 / sqrt(shape) = 2
  EXPECT_NEAR(coefficient_of_variation(arrival_offsets(gamma, 20000, 0, rng)), 2.0, 0.1);
  ArrivalSpec constant = poisson;
  constant.kind = ArrivalSpec::Kind::kConstant;
  offsets = arrival_offsets(constant, 0, 1.0, rng);
  EXPECT_EQ(offsets.size(), 51u);  // 0, 0.02, ..., 1.0
  ArrivalSpec ramp;
  ramp.kind = ArrivalSpec::Kind::kRamp;
  ramp.from_rate = 10;
  ramp.to_rate = 190;
  offsets = arrival_offsets(ramp, 0, 100, rng);
  // Expected count: integral of the rate = (10 + 190) / 2 * 100 = 10000; the second half holds 3/4... more.
  EXPECT_NEAR(static_cast<double>(offsets.size()), 10000, 400);
  const auto first_half = std::count_if(offsets.begin(), offsets.end(), [](double t) { return t < 50; });
  EXPECT_NEAR(static_cast<double>(first_half), (10 + 100) / 2.0 * 50, 200);
}

TEST(Plan, IsReproducibleFromTheSeedAndHonoursPrefixesAndSessions) {
  Workload workload;
  workload.input_tokens = LengthDistribution::fixed(12);
  workload.output_tokens = LengthDistribution::fixed(3);
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kPoisson;
  stage.arrival.rate = 10;
  stage.num_requests = 30;
  workload.stages = {stage};
  workload.prefix = PrefixSpec{4, 20, 1.5, 1.0};
  workload.sessions.num_turns = 3;
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  Plan first = build_plan(workload, builder);
  Plan second = build_plan(workload, builder);
  EXPECT_EQ(first.stages[0]->num_generated(), 0u) << "nothing is generated before the run asks";
  EXPECT_EQ(first.stages[0]->max_requests(), 30u);
  ASSERT_NE(first.stages[0]->session(9), nullptr);
  EXPECT_EQ(first.stages[0]->session(10), nullptr) << "30 requests of 3 turns: 10 sessions";
  EXPECT_TRUE(first.stages[0]->is_exhausted());
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(first.stages[0]->session(i)->turns[0].user_text, second.stages[0]->session(i)->turns[0].user_text);
    EXPECT_EQ(first.stages[0]->session(i)->arrival_s, second.stages[0]->session(i)->arrival_s);
    EXPECT_EQ(first.stages[0]->session(i)->turns[1].user_tokens, 12);
    EXPECT_GE(first.stages[0]->session(i)->prefix_group, 0);
  }
  EXPECT_EQ(count_whitespace_words(first.prefix_texts[0]), 20);
  workload.seed = 43;
  EXPECT_NE(build_plan(workload, builder).stages[0]->session(0)->turns[0].user_text,
            first.stages[0]->session(0)->turns[0].user_text);
}

// Lazy planning: a million planned requests cost nothing until asked for, a stage bounded only by its
// duration is open-ended, and sessions generated from several threads at once are the ones generated
// in order by one (each purpose has its own random stream, generation is serialized).
TEST(Plan, IsLazyOpenEndedAndTheSameFromAnyThread) {
  Workload workload;
  workload.input_tokens = LengthDistribution::fixed(64);
  workload.output_tokens = LengthDistribution::fixed(8);
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kPoisson;
  stage.arrival.rate = 1000;
  stage.num_requests = 1'000'000;
  workload.stages = {stage};
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  const auto start = std::chrono::steady_clock::now();
  Plan plan = build_plan(workload, builder);
  ASSERT_NE(plan.stages[0]->session(0), nullptr);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 0.5)
      << "the first request of a million does not wait for the others";
  EXPECT_EQ(plan.stages[0]->num_generated(), 1u);

  // Closed loop with a duration only: sessions keep coming.
  StageSpec closed;
  closed.arrival.kind = ArrivalSpec::Kind::kConcurrency;
  closed.arrival.concurrency = 4;
  closed.duration_s = 5;
  workload.stages = {closed};
  Plan open_ended = build_plan(workload, builder);
  EXPECT_EQ(open_ended.stages[0]->max_requests(), 0u);
  ASSERT_NE(open_ended.stages[0]->session(5000), nullptr);
  EXPECT_FALSE(open_ended.stages[0]->is_exhausted());

  // An open loop bounded by its duration: the arrivals stop at it.
  stage.num_requests = 0;
  stage.duration_s = 2;
  workload.stages = {stage};
  Plan timed = build_plan(workload, builder);
  size_t n = 0;
  while (const PlannedSession* session = timed.stages[0]->session(n)) {
    EXPECT_LE(session->arrival_s, 2.0);
    ++n;
  }
  EXPECT_NEAR(static_cast<double>(n), 2000, 200);

  // Several threads asking at once get what one thread gets in order.
  workload.stages = {closed};
  Plan alone = build_plan(workload, builder);
  Plan shared = build_plan(workload, builder);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&shared, t] {
      for (size_t i = static_cast<size_t>(t); i < 400; i += 3) shared.stages[0]->session(i);
    });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < 400; ++i) {
    EXPECT_EQ(shared.stages[0]->session(i)->turns[0].user_text, alone.stages[0]->session(i)->turns[0].user_text) << i;
    EXPECT_EQ(shared.stages[0]->session(i)->index, i);
  }
}

// The schedule as tern bench computed it before planning was lazy (all offsets up front): the
// reference the lazy clock must reproduce draw for draw, so that a seed keeps its meaning.
std::vector<double> eager_offsets(const ArrivalSpec& arrival, size_t max_count, double duration_s, std::mt19937_64& rng) {
  std::vector<double> offsets;
  auto is_full = [&](double t) { return (max_count > 0 && offsets.size() >= max_count) || (duration_s > 0 && t > duration_s); };
  if (arrival.kind == ArrivalSpec::Kind::kRamp) {
    const double a = arrival.from_rate, slope = (arrival.to_rate - arrival.from_rate) / duration_s;
    std::exponential_distribution<double> unit(1.0);
    double cumulative = 0;
    offsets.push_back(0);
    while (true) {
      cumulative += unit(rng);
      const double t = std::abs(slope) < 1e-12 ? cumulative / a : (-a + std::sqrt(a * a + 2 * slope * cumulative)) / slope;
      if (!std::isfinite(t) || is_full(t)) break;
      offsets.push_back(t);
    }
    return offsets;
  }
  double t = 0;
  std::exponential_distribution<double> exponential(arrival.rate);
  std::gamma_distribution<double> gamma(arrival.burstiness, 1.0 / (arrival.rate * arrival.burstiness));
  while (!is_full(t)) {
    offsets.push_back(t);
    switch (arrival.kind) {
      case ArrivalSpec::Kind::kPoisson: t += exponential(rng); break;
      case ArrivalSpec::Kind::kGamma: t += gamma(rng); break;
      default: t = static_cast<double>(offsets.size()) / arrival.rate; break;
    }
  }
  return offsets;
}

// The lazy arrival clock gives the offsets the eager schedule gave, for every arrival process.
TEST(Plan, ArrivalClockMatchesTheEagerSchedule) {
  for (auto kind : {ArrivalSpec::Kind::kPoisson, ArrivalSpec::Kind::kGamma, ArrivalSpec::Kind::kConstant, ArrivalSpec::Kind::kRamp}) {
    ArrivalSpec arrival;
    arrival.kind = kind;
    arrival.rate = 50;
    arrival.burstiness = 0.5;
    arrival.from_rate = 10;
    arrival.to_rate = 100;
    std::mt19937_64 eager_rng(7), lazy_rng(7);
    const std::vector<double> eager = eager_offsets(arrival, 300, 10, eager_rng);
    ArrivalClock clock(arrival, 300, 10);
    std::vector<double> lazy;
    while (auto t = clock.next(lazy_rng)) lazy.push_back(*t);
    EXPECT_EQ(lazy, eager);
    EXPECT_FALSE(eager.empty());
    std::mt19937_64 again(7);
    EXPECT_EQ(arrival_offsets(arrival, 0, 10, again).size() >= eager.size(), true);
  }
}

// Writes are priced by how long they are kept: cache_write for short ones, cache_write_1h for the rest
// (cache_write where no 1h price is given).
TEST(Cost, CacheWritesArePricedByRetention) {
  PriceTable price;
  price.input_per_mtok = 1;
  price.cached_input_per_mtok = 0.1;
  price.cache_write_per_mtok = 1.25;
  price.cache_write_1h_per_mtok = 2;
  price.output_per_mtok = 5;
  TokenTotals totals;
  totals.tokens.prompt_tokens = 1'000'000;
  totals.tokens.cached_tokens = 500'000;
  totals.tokens.cache_write_tokens = 300'000;
  totals.tokens.cache_write_1h_tokens = 100'000;
  totals.tokens.completion_tokens = 100'000;
  totals.num_requests = 10;
  // 200k uncached x 1 + 500k x 0.1 + 200k x 1.25 + 100k x 2 + 100k x 5, per 1M tokens
  EXPECT_NEAR(compute_cost(price, totals).effective_usd, 0.2 + 0.05 + 0.25 + 0.2 + 0.5, 1e-12);
  price.cache_write_1h_per_mtok.reset();
  EXPECT_NEAR(compute_cost(price, totals).effective_usd, 0.2 + 0.05 + 0.375 + 0.5, 1e-12);
}

TEST(Cost, HourlyPriceIsSpreadOverTheMeasuredThroughput) {
  PriceTable price;
  price.hourly_usd = 3.6;
  TokenTotals totals;
  totals.tokens.prompt_tokens = 600'000;
  totals.tokens.completion_tokens = 400'000;
  totals.num_requests = 1000;
  totals.num_good_requests = 500;
  totals.duration_s = 100;  // $0.10 for the run
  const CostMetrics cost = compute_cost(price, totals);
  EXPECT_EQ(cost.basis, "hourly");
  EXPECT_NEAR(cost.effective_usd, 0.1, 1e-12);
  EXPECT_NEAR(cost.effective_per_request_usd, 1e-4, 1e-15);
  EXPECT_NEAR(cost.effective_per_good_request_usd, 2e-4, 1e-15);
  EXPECT_NEAR(cost.effective_per_mtok_usd, 0.1, 1e-12);
  EXPECT_NEAR(cost.effective_per_moutput_tok_usd, 0.25, 1e-12);
}

TEST(ChunkedDecoder, DecodesAcrossArbitrarySplits) {
  const std::string body = "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t piece = 1; piece <= body.size(); ++piece) {
    ChunkedDecoder decoder;
    std::string payload;
    for (size_t start = 0; start < body.size(); start += piece) {
      ASSERT_TRUE(decoder.feed(std::string_view(body).substr(start, piece), payload));
    }
    EXPECT_EQ(payload, "hello, world");
    EXPECT_TRUE(decoder.is_done());
  }
  ChunkedDecoder bad;
  std::string payload;
  EXPECT_FALSE(bad.feed("zz\r\n", payload));
  ChunkedDecoder missing_crlf;
  EXPECT_FALSE(missing_crlf.feed("2\r\nabXY\r\n", payload));
}

TEST(Profile, DerivesShapesRatesReuseAndModelsFromALog) {
  const std::string path = (std::filesystem::temp_directory_path() / "tern_bench_profile_test.jsonl").string();
  {
    std::ofstream log(path);
    std::mt19937_64 rng(9);
    std::exponential_distribution<double> gap(10.0);  // 10 requests/s
    double t = 1'764'230'400.0;
    for (int i = 0; i < 2000; ++i) {
      t += gap(rng);
      const bool is_adapter = i % 4 == 0;
      const int prefix = i % 5;  // five system prompts in turn: every request after the first five reuses one
      log << fmt::format(R"({{"timestamp": {:.6f}, "model": "base", {} "prompt_tokens": {}, "completion_tokens": {}, )"
                         R"("cached_tokens": {}, "prefix_hash": "p{}"}})",
                         t, is_adapter ? R"("adapter": "lora-a",)" : "", 500 + i % 100, 100 + i % 50, i < 5 ? 0 : 256, prefix)
          << "\n";
    }
  }
  auto workload_json = profile_log(path, ProfileOptions{});
  ASSERT_TRUE(workload_json) << workload_json.error().message;
  const nlohmann::json& profile = (*workload_json)["profile"];
  EXPECT_EQ(profile["requests"], 2000);
  EXPECT_NEAR(profile["mean_qps"].get<double>(), 10, 0.6);
  EXPECT_NEAR(profile["interarrival_cv"].get<double>(), 1, 0.1);
  EXPECT_NEAR(profile["prompt_tokens"]["p50"].get<double>(), 549.5, 1);
  EXPECT_NEAR(profile["prefix_reuse_ratio"].get<double>(), 1995.0 / 2000, 1e-9);
  EXPECT_EQ((*workload_json)["prefix"]["groups"], 5);
  EXPECT_EQ((*workload_json)["prefix"]["length_tokens"], 256);
  EXPECT_EQ((*workload_json)["models"].size(), 2u);
  EXPECT_EQ((*workload_json)["stages"].size(), 25u);  // span / 24 buckets, plus the last partial one
  // What profile writes, tern bench reads back.
  auto workload = parse_workload(*workload_json, "");
  ASSERT_TRUE(workload) << workload.error().message;
  EXPECT_EQ(workload->models.size(), 2u);
  EXPECT_EQ(workload->stages[0].arrival.kind, ArrivalSpec::Kind::kPoisson);
  std::filesystem::remove(path);
}

TEST(Report, JsonHasTheDocumentedShapeAndHtmlIsSelfContained) {
  Workload workload;
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kConcurrency;
  stage.num_requests = 2;
  workload.stages = {stage, stage};
  TargetSpec target;
  target.name = "a";
  target.url = "http://127.0.0.1:1/v1";
  const std::vector<TargetSpec> targets = {target};
  Plan plan = build_plan(workload, PromptBuilder::whitespace_words());
  RunResult result;
  result.stages = {{0, 1'000'000'000}, {1'000'000'000, 2'000'000'000}};
  for (size_t stage_index = 0; stage_index < 2; ++stage_index) {
    RequestRecord record;
    record.stage = stage_index;
    record.scheduled_ns = result.stages[stage_index].start_ns;
    record.dispatched_ns = record.scheduled_ns + 1000;
    record.first_token_ns = record.scheduled_ns + 20'000'000;
    record.chunk_ns = {record.first_token_ns, record.first_token_ns + 5'000'000};
    record.chunk_text_bytes = {3, 3};
    record.end_ns = record.first_token_ns + 5'000'000;
    record.usage.prompt_tokens = 10;
    record.usage.completion_tokens = 2;
    record.saw_done = true;
    result.records.push_back(record);
  }
  const auto metrics = compute_metrics(result, plan, targets, {});
  ASSERT_EQ(metrics.size(), 2u);
  EXPECT_DOUBLE_EQ(metrics[0].latency.ttft_ms.p50, 20);
  EXPECT_DOUBLE_EQ(metrics[0].latency.e2e_ms.p50, 25);
  const ReportInput input{workload, plan, targets, result, metrics, "whitespace words", "2026-11-27T00:00:00Z", "test machine"};
  const nlohmann::json report = report_json(input, true);
  EXPECT_EQ(report["schema"], "tern.bench.report");
  EXPECT_EQ(report["schema_version"], kReportSchemaVersion);
  EXPECT_EQ(report["results"].size(), 2u);
  for (const char* key : {"ttft", "tpot", "itl_per_chunk", "itl_per_token", "e2e", "queue_delay"}) {
    EXPECT_TRUE(report["results"][0]["latency_ms"][key].contains("p99.9")) << key;
  }
  EXPECT_EQ(report["requests"].size(), 2u);
  const std::string html = report_html(input);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Across the sweep"), std::string::npos);  // two stages: sweep plots
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_NE(report_text(input).find("stage 2"), std::string::npos);
}

}  // namespace
}  // namespace tern::bench

namespace tern::bench {
namespace {

// The capacity search against an endpoint whose goodput falls off at a known rate.
std::function<std::optional<CapacityProbe>(double)> endpoint_with_capacity(double capacity, std::vector<double>& tried) {
  return [capacity, &tried](double rate) -> std::optional<CapacityProbe> {
    tried.push_back(rate);
    CapacityProbe probe;
    probe.rate = rate;
    probe.num_requests = 100;
    probe.passed = rate <= capacity;
    return probe;
  };
}

TEST(CapacitySearch, BracketsTheLimitWithinThePrecision) {
  std::vector<double> tried;
  const CapacityResult found = find_max_rate(endpoint_with_capacity(37, tried), {.start_rate = 1, .precision = 0.05});
  EXPECT_TRUE(found.is_bounded);
  EXPECT_LE(found.max_rate, 37);
  EXPECT_GT(found.max_rate, 37 / 1.05);
  EXPECT_EQ(tried[0], 1);
  EXPECT_EQ(tried[6], 64) << "doubling until a probe fails";
  EXPECT_EQ(found.probes.size(), tried.size());
  EXPECT_LE(tried.size(), 12u);
  // The answer is a rate that was tried and passed, never an interpolation.
  EXPECT_NE(std::find(tried.begin(), tried.end(), found.max_rate), tried.end());
}

TEST(CapacitySearch, GoesDownWhenTheFirstProbeFailsAndGivesUpBelowTheMinimum) {
  std::vector<double> tried;
  const CapacityResult low = find_max_rate(endpoint_with_capacity(0.3, tried), {.start_rate = 4, .precision = 0.1});
  EXPECT_TRUE(low.is_bounded);
  EXPECT_LE(low.max_rate, 0.3);
  EXPECT_GT(low.max_rate, 0.3 / 1.1);
  tried.clear();
  const CapacityResult none = find_max_rate(endpoint_with_capacity(0, tried), {.start_rate = 1, .min_rate = 0.1});
  EXPECT_EQ(none.max_rate, 0);
  EXPECT_LT(tried.back(), 0.2);
  EXPECT_NE(capacity_text(none, {}).find("no rate tried met the SLO"), std::string::npos);
}

TEST(CapacitySearch, AnUnboundedEndpointIsALowerBoundAndAnInterruptStops) {
  std::vector<double> tried;
  const CapacityResult all = find_max_rate(endpoint_with_capacity(1e9, tried), {.start_rate = 2, .max_probes = 4});
  EXPECT_FALSE(all.is_bounded);
  EXPECT_EQ(all.max_rate, 16);
  EXPECT_NE(capacity_text(all, {}).find("at least 16 req/s"), std::string::npos);
  int calls = 0;
  const CapacityResult stopped = find_max_rate(
      [&calls](double rate) -> std::optional<CapacityProbe> {
        if (++calls == 3) return std::nullopt;
        CapacityProbe probe;
        probe.rate = rate;
        probe.num_requests = 10;
        probe.passed = true;
        return probe;
      },
      {});
  EXPECT_TRUE(stopped.is_interrupted);
  EXPECT_EQ(stopped.probes.size(), 2u);
  EXPECT_EQ(capacity_to_json(stopped, {})["probes"].size(), 2u);
}

TEST(CapacitySearch, AProbePassesOnItsShareOfGoodRequests) {
  Metrics metrics;
  metrics.num_requests = 100;
  metrics.num_ok = 98;
  metrics.num_good = 95;
  metrics.good_fraction = 0.95;
  EXPECT_TRUE(probe_from_metrics(5, metrics, 0.95).passed);
  EXPECT_FALSE(probe_from_metrics(5, metrics, 0.96).passed);
  EXPECT_FALSE(probe_from_metrics(5, Metrics{}, 0.5).passed) << "no request proves nothing";
}

// A warm-up stage is sent but never measured, and adding one changes no measured request.
TEST(Warmup, DrawsFromItsOwnStreamsAndIsExcludedFromTheFigures) {
  Workload workload;
  workload.input_tokens = LengthDistribution::fixed(8);
  workload.output_tokens = LengthDistribution::fixed(2);
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kConcurrency;
  stage.num_requests = 4;
  workload.stages = {stage};
  const PromptBuilder builder = PromptBuilder::whitespace_words();
  Plan without = build_plan(workload, builder);
  StageSpec warmup = stage;
  warmup.is_warmup = true;
  workload.stages.insert(workload.stages.begin(), warmup);
  Plan with = build_plan(workload, builder);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(with.stages[1]->session(i)->turns[0].user_text, without.stages[0]->session(i)->turns[0].user_text);
  }
  EXPECT_NE(with.stages[0]->session(0)->turns[0].user_text, without.stages[0]->session(0)->turns[0].user_text);

  RunResult result;
  result.stages = {{0, 1'000'000'000}, {1'000'000'000, 2'000'000'000}};
  for (size_t s = 0; s < 2; ++s) {
    RequestRecord record;
    record.stage = s;
    record.scheduled_ns = result.stages[s].start_ns;
    record.dispatched_ns = record.scheduled_ns;
    record.first_token_ns = record.scheduled_ns + 1000;
    record.end_ns = record.scheduled_ns + 2000;
    record.error = s == 0 ? ErrorKind::kTimeout : ErrorKind::kNone;
    result.records.push_back(record);
  }
  TargetSpec target;
  target.name = "t";
  const std::vector<Metrics> metrics = compute_metrics(result, with, {target}, {});
  ASSERT_EQ(metrics.size(), 1u);
  EXPECT_EQ(metrics[0].stage, 1u);
  EXPECT_EQ(metrics[0].num_failed, 0u) << "the warm-up's failure is not the measured stage's";
  EXPECT_EQ(warmup_counts(result, with).num_requests, 1u);
  EXPECT_EQ(warmup_counts(result, with).num_failed, 1u);
}

}  // namespace
}  // namespace tern::bench

namespace tern::bench {
namespace {

// A request log as a replay: arrivals from the first request, prefix groups as long as the least the
// server had cached of them, refusals and unknown hashes left out; the workload file form reads the
// log relative to the file.
TEST(Replay, ReadsALogIntoArrivalsLengthsAndPrefixGroups) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "tern-replay-test";
  std::filesystem::create_directories(dir);
  {
    std::ofstream log(dir / "log.jsonl");
    log << R"({"timestamp": 100.5, "prompt_tokens": 300, "completion_tokens": 20, "cached_tokens": 256, "prefix_hash": "a", "model": "m1"})" << "\n"
        << R"({"timestamp": 100.0, "prompt_tokens": 290, "completion_tokens": 0, "cached_tokens": 128, "prefix_hash": "a", "model": "m2"})" << "\n"
        << R"({"timestamp": 101.0, "prompt_tokens": 40, "completion_tokens": 5, "cached_tokens": 0, "prefix_hash": "b"})" << "\n"
        << R"({"timestamp": 101.2, "prompt_tokens": 0, "completion_tokens": 0, "status": 401})" << "\n";
  }
  auto trace = load_replay((dir / "log.jsonl").string());
  ASSERT_TRUE(trace) << trace.error().message;
  const ReplayTrace& t = **trace;
  ASSERT_EQ(t.requests.size(), 3u) << "the refusal has no shape to replay";
  EXPECT_EQ(t.requests[0].offset_s, 0);
  EXPECT_EQ(t.requests[1].offset_s, 0.5);
  EXPECT_EQ(t.requests[0].prompt_tokens, 290);
  EXPECT_EQ(t.requests[0].output_tokens, 1) << "at least one token is asked for";
  EXPECT_EQ(t.requests[1].model, "m1");
  ASSERT_EQ(t.prefix_tokens, std::vector<int>{128}) << "group a: the least cached; group b: nothing cached, no prefix";
  EXPECT_EQ(t.requests[0].prefix_group, 0);
  EXPECT_EQ(t.requests[2].prefix_group, -1);

  auto workload = parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "replay", "log": "log.jsonl", "speedup": 4}})"), dir.string());
  ASSERT_TRUE(workload) << workload.error().message;
  ASSERT_TRUE(workload->replay);
  Plan plan = build_plan(*workload, PromptBuilder::whitespace_words());
  ASSERT_NE(plan.stages[0]->session(1), nullptr);
  EXPECT_EQ(plan.stages[0]->session(1)->arrival_s, 0.125);
  EXPECT_EQ(count_whitespace_words(plan.prefix_texts[0]) + plan.stages[0]->session(1)->turns[0].user_tokens, 300);
  EXPECT_EQ(plan.stages[0]->session(3), nullptr);
  EXPECT_EQ(workload_to_json(*workload)["stages"][0]["arrival"]["type"], "replay");

  EXPECT_FALSE(parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "replay"}})"), dir.string()));
  auto missing = parse_workload(nlohmann::json::parse(R"({"arrival": {"type": "replay", "log": "nope.jsonl"}})"), dir.string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nope.jsonl"), std::string::npos) << missing.error().message;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tern::bench

namespace tern::bench {
namespace {

std::string write_temp(const std::string& name, const std::string& content) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() / name;
  std::ofstream(path) << content;
  return path.string();
}

// Datasets: ShareGPT and OpenAI conversations and plain prompts, as an array or JSON Lines; rows
// without user text left out and counted; a bad row named; prompts over the limit cut at a turn or
// left out, counted, never truncated.
TEST(Dataset, ReadsConversationsAndPromptsAndFitsThemToALimit) {
  const std::string sharegpt = write_temp("tern-ds-sharegpt.json", R"([
    {"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "one two three"},
                       {"from": "gpt", "value": "four five"}, {"from": "human", "value": "six seven eight nine"},
                       {"from": "gpt", "value": "ten"}]},
    {"conversations": [{"from": "gpt", "value": "an answer without a question"}]}
  ])");
  auto a = load_dataset(sharegpt);
  ASSERT_TRUE(a) << a.error().message;
  ASSERT_EQ((*a)->conversations.size(), 1u);
  EXPECT_EQ((*a)->num_unusable, 1u);
  const Conversation& c = (*a)->conversations[0];
  EXPECT_EQ(c.system, "be brief");
  ASSERT_EQ(c.turns.size(), 2u);
  EXPECT_EQ(c.turns[1].user, "six seven eight nine");
  EXPECT_EQ(c.turns[0].reference, "four five");

  const std::string lines = write_temp("tern-ds.jsonl",
                                       "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hello there\"}]}]}\n"
                                       "{\"prompt\": \"a b c d e f\", \"output_tokens\": 7}\n");
  auto b = load_dataset(lines);
  ASSERT_TRUE(b) << b.error().message;
  ASSERT_EQ((*b)->conversations.size(), 2u);
  EXPECT_EQ((*b)->conversations[0].turns[0].user, "hello there");
  EXPECT_EQ((*b)->conversations[1].turns[0].output_tokens, 7);

  const PromptBuilder words = PromptBuilder::whitespace_words();
  // Limit 6: the sharegpt conversation's first prompt (2 + 3 = 5) fits, its second (5 + 2 + 4 = 11) does not.
  ASSERT_TRUE(fit_dataset(**a, words, 6));
  ASSERT_EQ((*a)->conversations[0].turns.size(), 1u);
  EXPECT_EQ((*a)->num_cut, 1u);
  EXPECT_EQ((*a)->conversations[0].turns[0].output_tokens, 2) << "from the reference's length";
  ASSERT_TRUE(fit_dataset(**b, words, 5));
  EXPECT_EQ((*b)->num_dropped_long, 1u) << "the 6-word prompt is left out";
  EXPECT_EQ((*b)->conversations.size(), 1u);
  EXPECT_FALSE(fit_dataset(**b, words, 1)) << "nothing left is an error";

  auto bad = load_dataset(write_temp("tern-ds-bad.jsonl", "{\"prompt\": \"x\"}\n{\"conversations\": [{\"from\": \"robot\", \"value\": \"x\"}]}\n"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("row 2"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("unknown speaker 'robot'"), std::string::npos);
  EXPECT_FALSE(load_dataset(write_temp("tern-ds-none.jsonl", "{\"other\": 1}\n")));
  EXPECT_FALSE(load_dataset("/nonexistent/dataset.json"));
}

// Sessions take the conversations in the seed's order, turn by turn, with their lengths.
TEST(Dataset, SessionsReplayConversationsInTheSeedsOrder) {
  std::string rows;
  for (int i = 0; i < 10; ++i) {
    rows += "{\"conversations\": [{\"from\": \"human\", \"value\": \"question " + std::to_string(i) + "\"}, {\"from\": \"gpt\", \"value\": \"a b c\"}, "
            "{\"from\": \"human\", \"value\": \"and then\"}]}\n";
  }
  Workload workload;
  auto dataset = load_dataset(write_temp("tern-ds-order.jsonl", rows));
  ASSERT_TRUE(dataset);
  const PromptBuilder words = PromptBuilder::whitespace_words();
  ASSERT_TRUE(fit_dataset(**dataset, words, 0));
  workload.dataset = *dataset;
  StageSpec stage;
  stage.arrival.kind = ArrivalSpec::Kind::kConcurrency;
  stage.num_requests = 24;
  workload.stages = {stage};
  Plan plan = build_plan(workload, words);
  std::set<std::string> first_turns;
  size_t requests = 0;
  for (size_t i = 0; const PlannedSession* s = plan.stages[0]->session(i); ++i) {
    first_turns.insert(s->turns[0].user_text);
    requests += s->turns.size();
    EXPECT_EQ(s->turns[0].max_tokens, 3) << "the reference's length";
    if (s->turns.size() > 1) {
      EXPECT_EQ(s->turns[1].user_text, "and then");
    }
  }
  EXPECT_EQ(requests, 24u);
  EXPECT_EQ(first_turns.size(), 10u) << "every conversation before any repeats";
  workload.seed = 7;
  Plan other = build_plan(workload, words);
  EXPECT_NE(other.stages[0]->session(0)->turns[0].user_text + other.stages[0]->session(1)->turns[0].user_text,
            plan.stages[0]->session(0)->turns[0].user_text + plan.stages[0]->session(1)->turns[0].user_text);
}

}  // namespace
}  // namespace tern::bench
