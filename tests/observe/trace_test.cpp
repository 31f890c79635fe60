// Request traces (observe/trace.h): W3C trace context from a client's traceparent, the store of recent
// timelines, the JSON of GET /admin/requests/{id}, and the OTLP JSON the exporter sends
// (observe/otlp_exporter.h) with GenAI semantic-convention attributes.

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "observe/otlp_exporter.h"
#include "observe/trace.h"

namespace tern::observe {
namespace {

using json = nlohmann::json;

TEST(TraceContext, TakesAValidTraceparentAndMakesFreshIdsOtherwise) {
  const auto joined = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  EXPECT_EQ(joined.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(joined.parent_span_id, "00f067aa0ba902b7");
  EXPECT_EQ(joined.span_id.size(), 16u);
  EXPECT_NE(joined.span_id, joined.parent_span_id);
  EXPECT_EQ(joined.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-" + joined.span_id + "-01");
  for (const char* bad : {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"}) {
    const auto fresh = TraceContext::from_traceparent(bad);
    EXPECT_EQ(fresh.trace_id.size(), 32u) << bad;
    EXPECT_NE(fresh.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736") << bad;
    EXPECT_TRUE(fresh.parent_span_id.empty()) << bad;
  }
  std::set<std::string> ids;
  for (int i = 0; i < 100; ++i) ids.insert(TraceContext::from_traceparent("").trace_id);
  EXPECT_EQ(ids.size(), 100u);
}

TEST(Trace, EventsComeBackInTimeOrderRelativeToTheStart) {
  const auto start = TraceClock::now();
  Trace trace(start);
  trace.add("late", {{"n", 2}}, start + std::chrono::milliseconds(20));
  trace.add("span", {}, start + std::chrono::milliseconds(5), 10.0);
  trace.add("early", {}, start + std::chrono::milliseconds(1));
  const auto events = trace.events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].name, "early");
  EXPECT_NEAR(events[0].at_ms, 1.0, 1e-6);
  EXPECT_EQ(events[1].name, "span");
  EXPECT_EQ(events[1].duration_ms, 10.0);
  EXPECT_EQ(events[2].attributes["n"], 2);
}

std::shared_ptr<const TraceRecord> record(const std::string& id, int status = 200) {
  auto r = std::make_shared<TraceRecord>();
  r->request_id = id;
  r->context = TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  r->operation = "chat";
  r->api = "openai";
  r->arrival_unix_s = 1764230400.5;
  r->e2e_ms = 120;
  r->ttft_ms = 30;
  r->model = "smollm2-135m";
  r->deployment = "smollm2-135m";
  r->status = status;
  r->finish_reason = status == 200 ? "stop" : "error";
  r->prompt_tokens = 100;
  r->cached_tokens = 64;
  r->completion_tokens = 20;
  r->max_tokens = 64;
  r->temperature = 0.7;
  r->events = {{.name = "queued", .at_ms = 0.5, .duration_ms = 1.5, .attributes = json::object()},
               {.name = "cache_lookup", .at_ms = 2, .duration_ms = -1, .attributes = {{"ram_tokens", 64}}},
               {.name = "prefill_chunk", .at_ms = 2, .duration_ms = 20, .attributes = {{"step", 7}, {"tokens", 36}}},
               {.name = "upstream_attempt", .at_ms = 0.2, .duration_ms = 119, .attributes = {{"deployment", "smollm2-135m"}}},
               {.name = "first_token", .at_ms = 30, .duration_ms = -1, .attributes = {{"step", 7}}}};
  return r;
}

TEST(TraceStore, KeepsTheLastRequestsAndFindsThemById) {
  TraceStore store(3);
  for (int i = 0; i < 5; ++i) store.put(record("r" + std::to_string(i)));
  EXPECT_EQ(store.find("r0"), nullptr);
  EXPECT_EQ(store.find("r1"), nullptr);
  ASSERT_NE(store.find("r4"), nullptr);
  const auto recent = store.recent(10);
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_EQ(recent[0]->request_id, "r4");
  EXPECT_EQ(recent[2]->request_id, "r2");
  // A client that reuses an id finds its latest request; evicting the older one keeps the newer.
  store.put(record("r2", 500));
  EXPECT_EQ(store.find("r2")->status, 500);
  store.put(record("x"));
  EXPECT_EQ(store.find("r2")->status, 500);
  TraceStore off(0);
  off.put(record("a"));
  EXPECT_EQ(off.find("a"), nullptr);
}

TEST(TraceJson, IsTheTimelineWithTheRequestsFields) {
  const json j = trace_json(*record("req-1"));
  EXPECT_EQ(j["request_id"], "req-1");
  EXPECT_EQ(j["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(j["parent_span_id"], "00f067aa0ba902b7");
  EXPECT_EQ(j["cached_tokens"], 64);
  ASSERT_EQ(j["timeline"].size(), 5u);
  EXPECT_EQ(j["timeline"][2]["name"], "prefill_chunk");
  EXPECT_EQ(j["timeline"][2]["step"], 7);
  EXPECT_EQ(j["timeline"][2]["duration_ms"], 20);
  EXPECT_FALSE(j["timeline"][1].contains("duration_ms")) << "an instant";
  EXPECT_FALSE(trace_summary_json(*record("req-1")).contains("timeline"));
}

json attribute(const json& attributes, const std::string& key) {
  for (const auto& a : attributes) {
    if (a["key"] == key) return a["value"];
  }
  return nullptr;
}

TEST(OtlpJson, OneServerSpanPerRequestWithGenAiAttributesAndChildSpans) {
  const json j = otlp_traces_json({record("req-1"), record("req-2", 503)}, "tern-test");
  const json& resource = j["resourceSpans"][0];
  EXPECT_EQ(attribute(resource["resource"]["attributes"], "service.name")["stringValue"], "tern-test");
  const json& spans = resource["scopeSpans"][0]["spans"];
  // Per request: the root, and one child per timed event (queued, prefill_chunk, upstream_attempt).
  ASSERT_EQ(spans.size(), 8u);
  const json& root = spans[0];
  EXPECT_EQ(root["name"], "chat smollm2-135m");
  EXPECT_EQ(root["kind"], 2);
  EXPECT_EQ(root["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(root["parentSpanId"], "00f067aa0ba902b7");
  EXPECT_EQ(root["startTimeUnixNano"], "1764230400500000000");
  EXPECT_EQ(root["endTimeUnixNano"], "1764230400620000000");
  const json& a = root["attributes"];
  EXPECT_EQ(attribute(a, "gen_ai.operation.name")["stringValue"], "chat");
  EXPECT_EQ(attribute(a, "gen_ai.provider.name")["stringValue"], "tern");
  EXPECT_EQ(attribute(a, "gen_ai.request.model")["stringValue"], "smollm2-135m");
  EXPECT_EQ(attribute(a, "gen_ai.response.model")["stringValue"], "smollm2-135m");
  EXPECT_EQ(attribute(a, "gen_ai.response.id")["stringValue"], "req-1");
  EXPECT_EQ(attribute(a, "gen_ai.usage.input_tokens")["intValue"], "100");
  EXPECT_EQ(attribute(a, "gen_ai.usage.output_tokens")["intValue"], "20");
  EXPECT_EQ(attribute(a, "gen_ai.request.max_tokens")["intValue"], "64");
  EXPECT_EQ(attribute(a, "gen_ai.request.temperature")["doubleValue"], 0.7);
  EXPECT_EQ(attribute(a, "gen_ai.response.finish_reasons")["arrayValue"]["values"][0]["stringValue"], "stop");
  EXPECT_EQ(attribute(a, "http.response.status_code")["intValue"], "200");
  EXPECT_EQ(root["status"]["code"], 0);
  ASSERT_EQ(root["events"].size(), 2u);  // the instants: cache_lookup, first_token
  EXPECT_EQ(root["events"][0]["name"], "cache_lookup");
  EXPECT_EQ(attribute(root["events"][0]["attributes"], "tern.ram_tokens")["intValue"], "64");
  EXPECT_EQ(root["events"][0]["timeUnixNano"], "1764230400502000000");
  const json& chunk = spans[2];
  EXPECT_EQ(chunk["name"], "prefill_chunk");
  EXPECT_EQ(chunk["parentSpanId"], root["spanId"]);
  EXPECT_EQ(chunk["traceId"], root["traceId"]);
  EXPECT_EQ(chunk["kind"], 1);
  EXPECT_EQ(chunk["startTimeUnixNano"], "1764230400502000000");
  EXPECT_EQ(chunk["endTimeUnixNano"], "1764230400522000000");
  EXPECT_EQ(attribute(chunk["attributes"], "tern.step")["intValue"], "7");
  EXPECT_EQ(spans[3]["name"], "upstream_attempt");
  EXPECT_EQ(spans[3]["kind"], 3) << "a client span";
  std::set<std::string> span_ids;
  for (const auto& s : spans) span_ids.insert(s["spanId"].get<std::string>());
  EXPECT_EQ(span_ids.size(), spans.size());
  // A 5xx is an error span; error.type names the status.
  EXPECT_EQ(spans[4]["status"]["code"], 2);
  EXPECT_EQ(attribute(spans[4]["attributes"], "error.type")["stringValue"], "503");
}

TEST(OtlpExporter, RefusesABadEndpoint) {
  auto bad = OtlpExporter::start({.endpoint = "ftp://collector:4318"});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("--otlp-endpoint"), std::string::npos) << bad.error().message;
}

}  // namespace
}  // namespace tern::observe
