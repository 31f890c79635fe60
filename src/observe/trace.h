#pragma once
// One request's timeline, as the parts of tern that handle it see it: the gateway (arrival, refusal,
// end), the router (each upstream attempt, retries, breaker decisions, fallbacks) and the engine (time
// in the queue, the prefix-cache lookup by tier, each prompt chunk with its step, preemptions, the
// first token, decoding). `GET /admin/requests/{id}` answers with it and the OTLP exporter
// (otlp_exporter.h) sends it to an OpenTelemetry collector.
//
// A Trace is shared: the gateway makes it, the router and the local provider add to it from their
// threads (a mutex; each request adds a few dozen events, never one per decoded token), and once the
// request ends the gateway freezes it into a TraceRecord that the TraceStore keeps.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace tern::observe {

using TraceClock = std::chrono::steady_clock;

/// One thing that happened to a request: an instant (duration_ms < 0) or a span.
struct TraceEvent {
  std::string name;       ///< "queued", "cache_lookup", "prefill_chunk", "first_token", "upstream_attempt", ...
  double at_ms = 0;       ///< since the request arrived
  double duration_ms = -1;
  nlohmann::json attributes = nlohmann::json::object();
};

/// W3C trace context: ids for OpenTelemetry, taken from the client's `traceparent` header when it sent
/// a valid one (so tern's spans join the caller's trace), else random.
struct TraceContext {
  std::string trace_id;        ///< 32 hex digits
  std::string span_id;         ///< 16 hex digits: the request's root span
  std::string parent_span_id;  ///< the client's span (empty: none)

  /// From a `traceparent` header ("00-<trace id>-<parent id>-<flags>"); fresh ids if it is absent or
  /// malformed (all-zero ids included).
  static TraceContext from_traceparent(std::string_view header);
  std::string traceparent() const;  ///< the header to send upstream: this request's span as the parent
};

class Trace {
 public:
  explicit Trace(TraceClock::time_point start = TraceClock::now(), TraceContext context = TraceContext::from_traceparent({}))
      : start_(start), context_(std::move(context)) {}

  /// `at` on the steady clock; `duration_ms` < 0 for an instant.
  void add(std::string name, nlohmann::json attributes = nlohmann::json::object(), TraceClock::time_point at = TraceClock::now(),
           double duration_ms = -1);
  /// The events so far, in time order.
  std::vector<TraceEvent> events() const;

  TraceClock::time_point start() const { return start_; }
  const TraceContext& context() const { return context_; }
  double ms_since_start(TraceClock::time_point at) const { return std::chrono::duration<double, std::milli>(at - start_).count(); }

 private:
  const TraceClock::time_point start_;
  const TraceContext context_;
  mutable std::mutex mutex_;
  std::vector<TraceEvent> events_;
};

/// A finished request: what the request log says of it, and its timeline.
struct TraceRecord {
  std::string request_id;
  TraceContext context;
  std::string operation;  ///< GenAI's operation name: "chat" or "text_completion"
  std::string api;        ///< "openai" or "anthropic": the schema the client spoke
  double arrival_unix_s = 0;
  double e2e_ms = 0;
  double ttft_ms = -1;  ///< < 0: no token came
  std::string model, deployment, adapter, region, key_id, org, finish_reason, error;
  int status = 0;
  int64_t prompt_tokens = 0, cached_tokens = 0, completion_tokens = 0;
  int64_t max_tokens = -1;   ///< asked for (< 0: not given)
  double temperature = -1;   ///< asked for (< 0: not given)
  double cost_usd = 0;
  std::vector<TraceEvent> events;
};

/// `GET /admin/requests/{id}`'s answer.
nlohmann::json trace_json(const TraceRecord& record);
/// The recent-requests list's row (no timeline).
nlohmann::json trace_summary_json(const TraceRecord& record);

/// The last `capacity` finished requests, by request id (a client's reused id finds its latest).
class TraceStore {
 public:
  explicit TraceStore(size_t capacity = 4096) : capacity_(capacity) {}
  void put(std::shared_ptr<const TraceRecord> record);
  std::shared_ptr<const TraceRecord> find(const std::string& request_id) const;
  /// Newest first, at most `limit`.
  std::vector<std::shared_ptr<const TraceRecord>> recent(size_t limit) const;
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<std::shared_ptr<const TraceRecord>> records_;  // oldest first
  std::unordered_map<std::string, std::shared_ptr<const TraceRecord>> by_id_;
};

}  // namespace tern::observe
