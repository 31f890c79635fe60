#include "observe/trace.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

namespace tern::observe {
namespace {

using json = nlohmann::json;

bool is_lower_hex(std::string_view text, size_t size) {
  if (text.size() != size) return false;
  bool all_zero = true;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    all_zero = all_zero && c == '0';
  }
  return !all_zero;  // W3C: an all-zero id is invalid
}

std::string random_hex(size_t digits) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::string out;
  while (out.size() < digits) out += fmt::format("{:016x}", random());
  out.resize(digits);
  if (out.find_first_not_of('0') == std::string::npos) out.back() = '1';
  return out;
}

json event_json(const TraceEvent& event) {
  json out = {{"name", event.name}, {"at_ms", event.at_ms}};
  if (event.duration_ms >= 0) out["duration_ms"] = event.duration_ms;
  for (const auto& [key, value] : event.attributes.items()) out[key] = value;
  return out;
}

}  // namespace

TraceContext TraceContext::from_traceparent(std::string_view header) {
  // version "00": 00-<32 hex>-<16 hex>-<2 hex> (lower case; all-zero ids are invalid).
  if (header.size() == 55 && header.substr(0, 3) == "00-" && header[35] == '-' && header[52] == '-' && is_lower_hex(header.substr(3, 32), 32) && is_lower_hex(header.substr(36, 16), 16)) {
    return {.trace_id = std::string(header.substr(3, 32)), .span_id = random_hex(16), .parent_span_id = std::string(header.substr(36, 16))};
  }
  return {.trace_id = random_hex(32), .span_id = random_hex(16), .parent_span_id = {}};
}

std::string TraceContext::traceparent() const { return fmt::format("00-{}-{}-01", trace_id, span_id); }

void Trace::add(std::string name, json attributes, TraceClock::time_point at, double duration_ms) {
  TraceEvent event{.name = std::move(name), .at_ms = ms_since_start(at), .duration_ms = duration_ms, .attributes = std::move(attributes)};
  std::lock_guard lock(mutex_);
  events_.push_back(std::move(event));
}

std::vector<TraceEvent> Trace::events() const {
  std::vector<TraceEvent> out;
  {
    std::lock_guard lock(mutex_);
    out = events_;
  }
  std::stable_sort(out.begin(), out.end(), [](const TraceEvent& a, const TraceEvent& b) { return a.at_ms < b.at_ms; });
  return out;
}

json trace_summary_json(const TraceRecord& r) {
  json out = {{"request_id", r.request_id}, {"trace_id", r.context.trace_id}, {"arrival", r.arrival_unix_s},
              {"model", r.model}, {"status", r.status}, {"finish_reason", r.finish_reason},
              {"prompt_tokens", r.prompt_tokens}, {"cached_tokens", r.cached_tokens}, {"completion_tokens", r.completion_tokens},
              {"e2e_ms", r.e2e_ms}, {"cost_usd", r.cost_usd}};
  if (r.ttft_ms >= 0) out["ttft_ms"] = r.ttft_ms;
  if (!r.deployment.empty()) out["deployment"] = r.deployment;
  if (!r.adapter.empty()) out["adapter"] = r.adapter;
  if (!r.region.empty()) out["region"] = r.region;
  if (!r.key_id.empty()) out["key_id"] = r.key_id;
  if (!r.org.empty()) out["org"] = r.org;
  if (!r.error.empty()) out["error"] = r.error;
  return out;
}

json trace_json(const TraceRecord& r) {
  json out = trace_summary_json(r);
  out["span_id"] = r.context.span_id;
  if (!r.context.parent_span_id.empty()) out["parent_span_id"] = r.context.parent_span_id;
  out["operation"] = r.operation;
  out["api"] = r.api;
  json timeline = json::array();
  for (const auto& event : r.events) timeline.push_back(event_json(event));
  out["timeline"] = std::move(timeline);
  return out;
}

void TraceStore::put(std::shared_ptr<const TraceRecord> record) {
  if (capacity_ == 0) return;
  std::lock_guard lock(mutex_);
  while (records_.size() >= capacity_) {
    const auto& oldest = records_.front();
    // A reused id may point at a newer record: only the map's own entry goes.
    if (auto it = by_id_.find(oldest->request_id); it != by_id_.end() && it->second == oldest) by_id_.erase(it);
    records_.pop_front();
  }
  by_id_[record->request_id] = record;
  records_.push_back(std::move(record));
}

std::shared_ptr<const TraceRecord> TraceStore::find(const std::string& request_id) const {
  std::lock_guard lock(mutex_);
  auto it = by_id_.find(request_id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<const TraceRecord>> TraceStore::recent(size_t limit) const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<const TraceRecord>> out;
  for (auto it = records_.rbegin(); it != records_.rend() && out.size() < limit; ++it) out.push_back(*it);
  return out;
}

}  // namespace tern::observe
