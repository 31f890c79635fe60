#include "observe/otlp_exporter.h"

#include <fmt/format.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cmath>
#include <cstdio>
#include <deque>
#include <random>

#include "http/client.h"

namespace tern::observe {
namespace {

using json = nlohmann::json;
namespace asio = boost::asio;

json any_value(const json& value) {
  if (value.is_string()) return {{"stringValue", value}};
  if (value.is_boolean()) return {{"boolValue", value}};
  if (value.is_number_integer()) return {{"intValue", std::to_string(value.get<int64_t>())}};  // int64 is a string in OTLP JSON
  if (value.is_number()) return {{"doubleValue", value}};
  if (value.is_array()) {
    json values = json::array();
    for (const auto& v : value) values.push_back(any_value(v));
    return {{"arrayValue", {{"values", values}}}};
  }
  return {{"stringValue", value.dump()}};
}

void add_attribute(json& attributes, std::string key, const json& value) {
  attributes.push_back({{"key", std::move(key)}, {"value", any_value(value)}});
}

std::string unix_nanos(double unix_s, double plus_ms) {
  // Summed as integers: a double holds Unix nanoseconds only to ~256 ns, and the offsets are exact.
  return fmt::format("{}", static_cast<int64_t>(std::llround(unix_s * 1e9)) + static_cast<int64_t>(std::llround(plus_ms * 1e6)));
}

std::string span_id() {
  thread_local std::mt19937_64 random{std::random_device{}()};
  uint64_t id = 0;
  while (id == 0) id = random();
  return fmt::format("{:016x}", id);
}

/// tern's own attributes: the event's, under "tern." unless already namespaced.
json event_attributes(const TraceEvent& event) {
  json attributes = json::array();
  for (const auto& [key, value] : event.attributes.items()) {
    add_attribute(attributes, key.find('.') == std::string::npos ? "tern." + key : key, value);
  }
  return attributes;
}

/// Which GenAI provider answered: a local model is tern itself; a remote deployment is named by its
/// `provider` attribute (the router's upstream_attempt events carry it).
std::string provider_name(const TraceRecord& r) {
  for (auto it = r.events.rbegin(); it != r.events.rend(); ++it) {
    if (it->name == "upstream_attempt" && it->attributes.contains("gen_ai.provider.name")) {
      return it->attributes["gen_ai.provider.name"].get<std::string>();
    }
  }
  return "tern";
}

void append_spans(const TraceRecord& r, json& spans) {
  json attributes = json::array();
  const std::string provider = provider_name(r);
  add_attribute(attributes, "gen_ai.operation.name", r.operation);
  add_attribute(attributes, "gen_ai.provider.name", provider);
  add_attribute(attributes, "gen_ai.system", provider);  // the name before semantic conventions 1.37
  add_attribute(attributes, "gen_ai.request.model", r.model);
  if (!r.deployment.empty()) add_attribute(attributes, "gen_ai.response.model", r.deployment);
  add_attribute(attributes, "gen_ai.response.id", r.request_id);
  if (!r.finish_reason.empty()) add_attribute(attributes, "gen_ai.response.finish_reasons", json::array({r.finish_reason}));
  add_attribute(attributes, "gen_ai.usage.input_tokens", r.prompt_tokens);
  add_attribute(attributes, "gen_ai.usage.output_tokens", r.completion_tokens);
  if (r.max_tokens >= 0) add_attribute(attributes, "gen_ai.request.max_tokens", r.max_tokens);
  if (r.temperature >= 0) add_attribute(attributes, "gen_ai.request.temperature", r.temperature);
  add_attribute(attributes, "http.response.status_code", r.status);
  add_attribute(attributes, "tern.request_id", r.request_id);
  add_attribute(attributes, "tern.api", r.api);
  add_attribute(attributes, "tern.cached_tokens", r.cached_tokens);
  add_attribute(attributes, "tern.cost_usd", r.cost_usd);
  if (r.ttft_ms >= 0) add_attribute(attributes, "tern.ttft_ms", r.ttft_ms);
  if (!r.adapter.empty()) add_attribute(attributes, "tern.lora_adapter", r.adapter);
  if (!r.region.empty()) add_attribute(attributes, "cloud.region", r.region);
  if (!r.key_id.empty()) add_attribute(attributes, "tern.key_id", r.key_id);
  if (!r.org.empty()) add_attribute(attributes, "tern.org", r.org);
  if (r.status >= 500) add_attribute(attributes, "error.type", fmt::format("{}", r.status));

  json events = json::array();
  json children = json::array();
  for (const TraceEvent& event : r.events) {
    if (event.duration_ms < 0) {
      events.push_back({{"timeUnixNano", unix_nanos(r.arrival_unix_s, event.at_ms)}, {"name", event.name},
                        {"attributes", event_attributes(event)}});
      continue;
    }
    const bool is_upstream = event.name == "upstream_attempt";
    children.push_back({{"traceId", r.context.trace_id}, {"spanId", span_id()}, {"parentSpanId", r.context.span_id},
                        {"name", event.name}, {"kind", is_upstream ? 3 : 1},  // CLIENT : INTERNAL
                        {"startTimeUnixNano", unix_nanos(r.arrival_unix_s, event.at_ms)},
                        {"endTimeUnixNano", unix_nanos(r.arrival_unix_s, event.at_ms + event.duration_ms)},
                        {"attributes", event_attributes(event)}, {"status", {{"code", 0}}}});
  }
  json root = {{"traceId", r.context.trace_id}, {"spanId", r.context.span_id},
               {"name", fmt::format("{} {}", r.operation, r.model)}, {"kind", 2},  // SERVER
               {"startTimeUnixNano", unix_nanos(r.arrival_unix_s, 0)}, {"endTimeUnixNano", unix_nanos(r.arrival_unix_s, r.e2e_ms)},
               {"attributes", std::move(attributes)}, {"events", std::move(events)}};
  if (!r.context.parent_span_id.empty()) root["parentSpanId"] = r.context.parent_span_id;
  // OpenTelemetry's HTTP conventions: a server span is an error for 5xx only (4xx are the client's).
  root["status"] = r.status >= 500 ? json{{"code", 2}, {"message", r.error}} : json{{"code", 0}};
  spans.push_back(std::move(root));
  for (auto& child : children) spans.push_back(std::move(child));
}

}  // namespace

json otlp_traces_json(const std::vector<std::shared_ptr<const TraceRecord>>& records, const std::string& service_name) {
  json spans = json::array();
  for (const auto& record : records) append_spans(*record, spans);
  json resource_attributes = json::array();
  add_attribute(resource_attributes, "service.name", service_name);
  add_attribute(resource_attributes, "telemetry.sdk.name", "tern");
  add_attribute(resource_attributes, "telemetry.sdk.language", "cpp");
  return {{"resourceSpans", json::array({{{"resource", {{"attributes", resource_attributes}}},
                                          {"scopeSpans", json::array({{{"scope", {{"name", "tern"}}}, {"spans", spans}}})}}})}};
}

struct OtlpExporter::Impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  asio::steady_timer timer{io};
  std::unique_ptr<http::HttpStreamClient> client;

  std::mutex mutex;
  std::condition_variable idle;
  std::deque<std::shared_ptr<const TraceRecord>> queue;
  int64_t in_flight = 0;  // posts not yet answered (io thread only changes it, under the mutex)
  bool stopping = false;
  OtlpStats stats;
  std::chrono::steady_clock::time_point last_complaint{};
  std::thread thread;
};

Result<std::unique_ptr<OtlpExporter>> OtlpExporter::start(OtlpOptions options) {
  // The base URL, as OpenTelemetry's OTEL_EXPORTER_OTLP_ENDPOINT gives it; a full /v1/traces URL works too.
  std::string base = options.endpoint;
  if (base.ends_with("/")) base.pop_back();
  if (base.ends_with("/v1/traces")) base.resize(base.size() - std::string_view("/v1/traces").size());
  auto url = http::parse_url(base);
  if (!url) return fail("--otlp-endpoint: {}", url.error().message);
  std::unique_ptr<OtlpExporter> exporter(new OtlpExporter(std::move(options)));
  auto client = http::HttpStreamClient::create(exporter->impl_->io.get_executor(), *url, 2, {});
  if (!client) return fail("--otlp-endpoint {}: {}", exporter->options_.endpoint, client.error().message);
  exporter->impl_->client = std::move(*client);
  Impl& impl = *exporter->impl_;
  asio::post(impl.io, [self = exporter.get()] { self->arm_timer(); });
  impl.thread = std::thread([&impl] { impl.io.run(); });
  return exporter;
}

void OtlpExporter::arm_timer() {
  impl_->timer.expires_after(options_.flush_interval);
  impl_->timer.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the exporter stops
    flush_now_on_io();
    arm_timer();
  });
}

OtlpExporter::OtlpExporter(OtlpOptions options) : options_(std::move(options)), impl_(std::make_unique<Impl>()) {}

OtlpExporter::~OtlpExporter() {
  flush();
  asio::post(impl_->io, [this] {
    impl_->timer.cancel();
    impl_->client.reset();
    impl_->guard.reset();
  });
  impl_->thread.join();
}

void OtlpExporter::export_record(std::shared_ptr<const TraceRecord> record) {
  bool post_now = false;
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->queue.size() >= options_.max_queued) {
      ++impl_->stats.dropped_records;
      return;
    }
    impl_->queue.push_back(std::move(record));
    post_now = impl_->queue.size() == options_.max_batch;
  }
  if (post_now) asio::post(impl_->io, [this] { flush_now_on_io(); });
}

void OtlpExporter::flush_now_on_io() {
  Impl& impl = *impl_;
  while (true) {
    std::vector<std::shared_ptr<const TraceRecord>> batch;
    {
      std::lock_guard lock(impl.mutex);
      if (impl.queue.empty() || impl.client == nullptr) return;
      // A collector that has not answered several batches is not keeping up: drop rather than pile up.
      if (impl.in_flight >= 4) {
        impl.stats.dropped_records += static_cast<int64_t>(impl.queue.size());
        impl.queue.clear();
        return;
      }
      while (!impl.queue.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(impl.queue.front()));
        impl.queue.pop_front();
      }
      ++impl.in_flight;
    }
    const int64_t count = static_cast<int64_t>(batch.size());
    std::string body = otlp_traces_json(batch, options_.service_name).dump();
    auto status = std::make_shared<int>(0);
    http::StreamCallbacks callbacks;
    callbacks.on_response = [status](int http_status, std::string_view, http::Clock::time_point) { *status = http_status; };
    callbacks.on_finished = [this, count, status](http::ErrorKind kind, int, std::string detail, http::Clock::time_point) {
      std::lock_guard lock(impl_->mutex);
      --impl_->in_flight;
      if (kind == http::ErrorKind::kNone && *status >= 200 && *status < 300) {
        impl_->stats.exported_records += count;
      } else {
        ++impl_->stats.failed_posts;
        impl_->stats.dropped_records += count;
        const auto now = std::chrono::steady_clock::now();
        if (now - impl_->last_complaint > std::chrono::minutes(1)) {
          impl_->last_complaint = now;
          std::fprintf(stderr, "tern serve: OTLP export to %s failed (%s): %lld request traces dropped\n", options_.endpoint.c_str(),
                       detail.empty() ? fmt::format("HTTP {}", *status).c_str() : detail.c_str(), static_cast<long long>(count));
        }
      }
      impl_->idle.notify_all();
    };
    impl.client->post_stream("/v1/traces", std::move(body), options_.timeout, std::move(callbacks));
  }
}

void OtlpExporter::flush() {
  asio::post(impl_->io, [this] { flush_now_on_io(); });
  std::unique_lock lock(impl_->mutex);
  impl_->idle.wait_for(lock, options_.timeout, [&] { return impl_->queue.empty() && impl_->in_flight == 0; });
}

OtlpStats OtlpExporter::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

}  // namespace tern::observe
