#pragma once
// Sends finished requests' traces to an OpenTelemetry collector: OTLP over HTTP with the JSON encoding
// (POST {endpoint}/v1/traces), the attribute names of OpenTelemetry's GenAI semantic conventions.
//
// Each request is a SERVER span named "{operation} {model}" ("chat smollm2-135m") carrying
// gen_ai.operation.name, gen_ai.provider.name, gen_ai.request.model, gen_ai.response.model,
// gen_ai.response.id, gen_ai.response.finish_reasons, gen_ai.usage.input_tokens / output_tokens,
// gen_ai.request.max_tokens / temperature where given, http.response.status_code and tern.* extras; its
// timed parts (queue, prompt chunks, decoding, upstream attempts) are child spans, its instants (first
// token, cache lookup, preemption, retry, breaker, fallback) span events.
//
// export_record() only queues. A thread of the exporter's own batches what is queued every
// `flush_interval` (or at `max_batch` records) and posts it; a collector that is down or slow costs
// dropped batches (counted, logged once a minute), never a request's time or unbounded memory.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "observe/trace.h"
#include "util/result.h"

namespace tern::observe {

struct OtlpOptions {
  std::string endpoint;  ///< the collector's OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (/v1/traces is appended)
  std::string service_name = "tern";
  std::chrono::milliseconds flush_interval{1000};
  size_t max_batch = 512;        ///< records per POST at most
  size_t max_queued = 16384;     ///< records waiting at most; more are dropped
  std::chrono::milliseconds timeout{10000};  ///< one POST
};

struct OtlpStats {
  int64_t exported_records = 0;  ///< requests whose spans the collector accepted (2xx)
  int64_t dropped_records = 0;   ///< lost to a full queue or a failed POST
  int64_t failed_posts = 0;
};

/// The OTLP JSON of `records` (one resourceSpans entry).
nlohmann::json otlp_traces_json(const std::vector<std::shared_ptr<const TraceRecord>>& records, const std::string& service_name);

class OtlpExporter {
 public:
  /// Checks the endpoint's URL and starts the exporter's thread (nothing is sent until a request ends).
  static Result<std::unique_ptr<OtlpExporter>> start(OtlpOptions options);
  ~OtlpExporter();  ///< sends what is queued (waiting up to `timeout`), then stops
  OtlpExporter(const OtlpExporter&) = delete;
  OtlpExporter& operator=(const OtlpExporter&) = delete;

  void export_record(std::shared_ptr<const TraceRecord> record);
  /// Sends everything queued now and waits (up to `timeout`) until the collector answered.
  void flush();
  OtlpStats stats() const;
  const OtlpOptions& options() const { return options_; }

 private:
  struct Impl;
  explicit OtlpExporter(OtlpOptions options);
  // On the exporter's thread.
  void arm_timer();
  void flush_now_on_io();
  OtlpOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::observe
