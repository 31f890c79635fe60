#include "observe/live_stats.h"

#include <algorithm>

#include "util/clock.h"

namespace tern::observe {
namespace {

using json = nlohmann::json;

/// Bucket-wise a - b (a later sample minus an earlier one of the same histogram); a histogram whose
/// shape changed (a model reloaded) counts from zero.
HistogramCounts minus(const HistogramCounts& a, const HistogramCounts* b) {
  HistogramCounts out = a;
  if (b == nullptr || b->counts.size() != a.counts.size()) return out;
  for (size_t i = 0; i < out.counts.size(); ++i) out.counts[i] = a.counts[i] >= b->counts[i] ? a.counts[i] - b->counts[i] : a.counts[i];
  return out;
}

void add_into(HistogramCounts& sum, const HistogramCounts& h) {
  if (sum.counts.empty()) {
    sum = h;
    return;
  }
  if (sum.counts.size() != h.counts.size()) return;  // engines share the bounds; never mix shapes
  for (size_t i = 0; i < sum.counts.size(); ++i) sum.counts[i] += h.counts[i];
}

const EngineSample* find_engine(const std::optional<GaugeSample>& sample, const std::string& model) {
  if (!sample) return nullptr;
  for (const auto& e : sample->engines) {
    if (e.model == model) return &e;
  }
  return nullptr;
}

json quantile_ms(double q, const HistogramCounts& h) {
  auto v = histogram_quantile(q, h);
  return v ? json(*v * 1000.0) : json(nullptr);
}

}  // namespace

std::optional<double> histogram_quantile(double q, const HistogramCounts& h) {
  uint64_t total = 0;
  for (uint64_t c : h.counts) total += c;
  if (total == 0 || h.counts.size() != h.bounds.size() + 1) return std::nullopt;
  const double rank = q * static_cast<double>(total);
  uint64_t below = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    if (static_cast<double>(below + h.counts[i]) >= rank && h.counts[i] > 0) {
      if (i == h.bounds.size()) return h.bounds.empty() ? std::nullopt : std::optional(h.bounds.back());  // +Inf: the last bound
      const double lower = i == 0 ? 0.0 : h.bounds[i - 1];
      const double within = (rank - static_cast<double>(below)) / static_cast<double>(h.counts[i]);
      return lower + (h.bounds[i] - lower) * std::clamp(within, 0.0, 1.0);
    }
    below += h.counts[i];
  }
  return h.bounds.empty() ? std::nullopt : std::optional(h.bounds.back());
}

LiveStats::LiveStats(std::chrono::milliseconds interval, size_t history) : interval_(interval), history_(history) {}

LiveStats::~LiveStats() { stop(); }

void LiveStats::start(std::function<GaugeSample()> source) {
  stop();
  source_ = std::move(source);
  stopping_ = false;
  add_sample(source_());  // the baseline the first point's rates are measured from
  thread_ = std::thread([this] { run(); });
}

void LiveStats::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(wake_mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void LiveStats::run() {
  std::unique_lock lock(wake_mutex_);
  while (!wake_.wait_for(lock, interval_, [&] { return stopping_; })) {
    lock.unlock();
    add_sample(source_());
    lock.lock();
  }
}

void LiveStats::on_request(const FinishedRequest& r) {
  const bool is_error = r.status >= 400;
  auto add = [&](Traffic& t) {
    ++t.requests;
    t.errors += is_error ? 1 : 0;
    t.prompt_tokens += r.prompt_tokens;
    t.cached_tokens += r.cached_tokens;
    t.completion_tokens += r.completion_tokens;
    t.cost_usd += r.cost_usd;
  };
  std::lock_guard lock(mutex_);
  add(totals_);
  add(by_model_[{r.model, r.deployment}]);
  if (!r.key_id.empty()) {
    add(by_key_[r.key_id]);
    org_of_key_[r.key_id] = r.org;
  }
  if (!r.org.empty()) add(by_org_[r.org]);
}

void LiveStats::add_sample(GaugeSample sample) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  if (last_sample_) {
    const double dt = std::max(std::chrono::duration<double>(now - last_sample_at_).count(), 1e-3);
    HistogramCounts ttft, itl;
    int64_t running = 0, waiting = 0, generated = 0, queried = 0, hits = 0, disk = 0, pinned = 0;
    double kv_usage = 0;
    for (const EngineSample& e : sample.engines) {
      running += e.running;
      waiting += e.waiting;
      kv_usage = std::max(kv_usage, e.kv_usage);
      const EngineSample* before = find_engine(last_sample_, e.model);
      // A model unloaded and loaded again starts its counters over: count from zero then.
      const bool restarted = before == nullptr || e.generation_tokens < before->generation_tokens || e.prefix_query_tokens < before->prefix_query_tokens;
      generated += e.generation_tokens - (restarted ? 0 : before->generation_tokens);
      queried += e.prefix_query_tokens - (restarted ? 0 : before->prefix_query_tokens);
      hits += e.prefix_hit_tokens - (restarted ? 0 : before->prefix_hit_tokens);
      disk += e.disk_hit_tokens - (restarted ? 0 : before->disk_hit_tokens);
      pinned += e.pinned_hit_tokens - (restarted ? 0 : before->pinned_hit_tokens);
      add_into(ttft, minus(e.ttft, restarted ? nullptr : &before->ttft));
      add_into(itl, minus(e.itl, restarted ? nullptr : &before->itl));
    }
    const double q = static_cast<double>(std::max<int64_t>(queried, 1));
    json point = {{"t", unix_seconds()},
                  {"requests_per_s", static_cast<double>(totals_.requests - totals_at_last_sample_.requests) / dt},
                  {"errors_per_s", static_cast<double>(totals_.errors - totals_at_last_sample_.errors) / dt},
                  {"output_tokens_per_s", static_cast<double>(generated) / dt},
                  {"ttft_p50_ms", quantile_ms(0.5, ttft)}, {"ttft_p99_ms", quantile_ms(0.99, ttft)},
                  {"itl_p50_ms", quantile_ms(0.5, itl)}, {"itl_p99_ms", quantile_ms(0.99, itl)},
                  {"running", running}, {"waiting", waiting}, {"kv_usage", kv_usage},
                  {"prompt_tokens_looked_up", queried},
                  {"hit_rate_ram", queried > 0 ? json(static_cast<double>(std::max<int64_t>(hits - disk - pinned, 0)) / q) : json(nullptr)},
                  {"hit_rate_disk", queried > 0 ? json(static_cast<double>(disk) / q) : json(nullptr)},
                  {"hit_rate_pinned", queried > 0 ? json(static_cast<double>(pinned) / q) : json(nullptr)}};
    series_.push_back(std::move(point));
    while (series_.size() > history_) series_.pop_front();
  }
  last_sample_ = std::move(sample);
  last_sample_at_ = now;
  totals_at_last_sample_ = totals_;
}

json LiveStats::snapshot(double since_unix_s) const {
  auto traffic_json = [](const Traffic& t) {
    return json{{"requests", t.requests}, {"errors", t.errors}, {"prompt_tokens", t.prompt_tokens}, {"cached_tokens", t.cached_tokens},
                {"completion_tokens", t.completion_tokens}, {"cost_usd", t.cost_usd}};
  };
  std::lock_guard lock(mutex_);
  json series = json::array();
  for (const auto& point : series_) {
    if (point["t"].get<double>() > since_unix_s) series.push_back(point);
  }
  json engines = json::array(), deployments = json::array();
  if (last_sample_) {
    for (const EngineSample& e : last_sample_->engines) {
      const double q = static_cast<double>(std::max<int64_t>(e.prefix_query_tokens, 1));
      engines.push_back({{"model", e.model}, {"loaded", e.loaded}, {"running", e.running}, {"waiting", e.waiting}, {"kv_usage", e.kv_usage},
                         {"prompt_tokens", e.prompt_tokens}, {"generation_tokens", e.generation_tokens},
                         {"finished_requests", e.finished_requests}, {"prefix_query_tokens", e.prefix_query_tokens},
                         {"prefix_hit_tokens", e.prefix_hit_tokens}, {"disk_hit_tokens", e.disk_hit_tokens},
                         {"pinned_hit_tokens", e.pinned_hit_tokens},
                         {"hit_rate", static_cast<double>(e.prefix_hit_tokens) / q}});
    }
    for (const DeploymentSample& d : last_sample_->deployments) {
      deployments.push_back({{"name", d.name}, {"kind", d.kind}, {"breaker", d.breaker}, {"outstanding", d.outstanding},
                             {"requests", d.requests}, {"failures", d.failures}, {"ttft_ewma_ms", d.ttft_ewma_s * 1000.0}});
    }
  }
  json traffic = json::array();
  for (const auto& [names, t] : by_model_) {
    json row = traffic_json(t);
    row["model"] = names.first;
    row["deployment"] = names.second;
    traffic.push_back(std::move(row));
  }
  json keys = json::array(), orgs = json::array();
  for (const auto& [key, t] : by_key_) {
    json row = traffic_json(t);
    row["key_id"] = key;
    row["org"] = org_of_key_.at(key);
    keys.push_back(std::move(row));
  }
  for (const auto& [org, t] : by_org_) {
    json row = traffic_json(t);
    row["org"] = org;
    orgs.push_back(std::move(row));
  }
  return {{"now", unix_seconds()}, {"interval_s", std::chrono::duration<double>(interval_).count()}, {"series", std::move(series)},
          {"totals", traffic_json(totals_)}, {"engines", std::move(engines)}, {"deployments", std::move(deployments)},
          {"traffic", std::move(traffic)}, {"spend", {{"keys", std::move(keys)}, {"orgs", std::move(orgs)}}}};
}

}  // namespace tern::observe
