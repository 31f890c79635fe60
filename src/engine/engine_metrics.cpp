#include "engine/engine_metrics.h"

#include <chrono>

#include <fmt/format.h>

#include "util/prometheus.h"

namespace tern::engine {
namespace {

std::vector<double> latency_buckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0};
}
std::vector<double> token_buckets() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}; }

}  // namespace

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels, bounds_[i], cumulative);
  }
  out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, count_);
  out += fmt::format("{}_sum{{{}}} {}\n{}_count{{{}}} {}\n", name, labels, sum_, name, labels, count_);
}

EngineMetrics::EngineMetrics(std::string model_name)
    : labels_(fmt::format("model_name=\"{}\"", prometheus_label(model_name))),
      ttft_(latency_buckets()),
      itl_(latency_buckets()),
      e2e_(latency_buckets()),
      queue_(latency_buckets()),
      prefill_(latency_buckets()),
      decode_(latency_buckets()),
      step_tokens_(token_buckets()),
      request_prompt_tokens_(token_buckets()),
      request_generation_tokens_(token_buckets()),
      step_seconds_(latency_buckets()),
      step_prefill_tokens_(token_buckets()),
      step_prediction_error_({-0.1, -0.05, -0.02, -0.01, -0.005, 0.005, 0.01, 0.02, 0.05, 0.1}),
      spec_acceptance_rate_({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0}),
      spec_tokens_per_step_({1, 2, 3, 4, 5, 6, 8, 12, 16, 32, 64}) {
  for (const char* reason : {"stop", "length", "abort"}) finished_[reason] = 0;
}

void EngineMetrics::set_itl_target(double seconds, double factor) {
  std::lock_guard lock(mutex_);
  itl_target_s_ = seconds;
  itl_target_factor_ = factor;
}

void EngineMetrics::on_grammar_masks(int64_t num_masks, double fill_seconds, double critical_seconds) {
  std::lock_guard lock(mutex_);
  grammar_masks_ += num_masks;
  grammar_fill_s_ += fill_seconds;
  grammar_critical_s_ += critical_seconds;
}

void EngineMetrics::on_speculation(int64_t num_draft, int64_t num_accepted) {
  std::lock_guard lock(mutex_);
  ++spec_drafts_;
  spec_draft_tokens_ += num_draft;
  spec_accepted_tokens_ += num_accepted;
  spec_tokens_per_step_.observe(static_cast<double>(num_accepted + 1));
}

void EngineMetrics::on_speculative_request(int64_t num_draft, int64_t num_accepted) {
  std::lock_guard lock(mutex_);
  if (num_draft > 0) spec_acceptance_rate_.observe(static_cast<double>(num_accepted) / static_cast<double>(num_draft));
}

void EngineMetrics::set_gauges(const EngineGauges& gauges) {
  std::lock_guard lock(mutex_);
  gauges_ = gauges;
}

EngineGauges EngineMetrics::gauges() const {
  std::lock_guard lock(mutex_);
  return gauges_;
}

EngineSnapshot EngineMetrics::snapshot() const {
  std::lock_guard lock(mutex_);
  int64_t finished = 0;
  for (const auto& [reason, n] : finished_) finished += n;
  return {.gauges = gauges_, .prompt_tokens = prompt_tokens_, .generation_tokens = generation_tokens_, .finished_requests = finished,
          .ttft = ttft_, .itl = itl_};
}

void EngineMetrics::on_step(const StepRecord& step) {
  std::lock_guard lock(mutex_);
  step_tokens_.observe(static_cast<double>(step.num_tokens));
  step_seconds_.observe(step.measured_seconds);
  if (step.num_prefill_tokens > 0) step_prefill_tokens_.observe(static_cast<double>(step.num_prefill_tokens));
  step_prediction_error_.observe(step.measured_seconds - step.predicted_seconds);
  preemptions_ += step.num_preemptions;
  if (step.is_itl_limited) ++itl_limited_steps_;
  last_step_ = step;
}

void EngineMetrics::on_prompt_tokens(int64_t n) {
  std::lock_guard lock(mutex_);
  prompt_tokens_ += n;
}

void EngineMetrics::on_generation_token() {
  std::lock_guard lock(mutex_);
  ++generation_tokens_;
}

void EngineMetrics::on_first_token(double ttft_seconds) {
  std::lock_guard lock(mutex_);
  ttft_.observe(ttft_seconds);
}

void EngineMetrics::on_inter_token(double seconds) {
  std::lock_guard lock(mutex_);
  itl_.observe(seconds);
}

void EngineMetrics::on_finished(const std::string& finish_reason, double e2e_seconds, double queue_seconds,
                                double prefill_seconds, double decode_seconds, int64_t prompt_tokens,
                                int64_t generation_tokens) {
  std::lock_guard lock(mutex_);
  ++finished_[finish_reason];
  e2e_.observe(e2e_seconds);
  queue_.observe(queue_seconds);
  prefill_.observe(prefill_seconds);
  decode_.observe(decode_seconds);
  request_prompt_tokens_.observe(static_cast<double>(prompt_tokens));
  request_generation_tokens_.observe(static_cast<double>(generation_tokens));
}

void EngineMetrics::on_cache_writes(const std::map<int64_t, int64_t>& tokens_by_ttl_s) {
  std::lock_guard lock(mutex_);
  for (const auto& [ttl, tokens] : tokens_by_ttl_s) cache_write_tokens_[ttl] += tokens;
}

void EngineMetrics::set_lora_gauges(LoraGauges gauges) {
  std::lock_guard lock(mutex_);
  lora_ = std::move(gauges);
}

void EngineMetrics::on_lora_finished(const std::string& adapter, int64_t prompt_tokens, int64_t generation_tokens) {
  std::lock_guard lock(mutex_);
  LoraCounts& c = lora_counts_[adapter];
  ++c.requests;
  c.prompt_tokens += prompt_tokens;
  c.generation_tokens += generation_tokens;
}

std::string EngineMetrics::render() const {
  std::lock_guard lock(mutex_);
  std::string out;
  const std::string& l = labels_;
  // One sample per metric with only the model label: counters and gauges.
  const auto single = [&](const char* name, const char* type, const char* help, auto value) {
    prometheus_header(out, name, type, help);
    out += fmt::format("tern:{}{{{}}} {}\n", name, l, value);
  };
  single("num_requests_running", "gauge", "Requests holding KV blocks and being computed.", gauges_.running);
  single("num_requests_waiting", "gauge", "Requests queued for admission.", gauges_.waiting);
  single("kv_cache_usage_perc", "gauge", "Fraction of KV cache blocks held by requests (0..1).", gauges_.kv_usage);
  single("prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache.", gauges_.prefix_queries);
  single("prefix_cache_hits_total", "counter", "Prompt tokens found in the prefix cache.", gauges_.prefix_hits);
  const PinStats& pins = gauges_.pins;
  single("kv_pinned_blocks", "gauge", "KV blocks pinned by cache retention (in use or idle).", pins.pinned_blocks);
  single("kv_pinned_idle_blocks", "gauge", "Pinned KV blocks no request holds (kept only by their TTL).", pins.idle_pinned_blocks);
  single("kv_pins_total", "counter", "KV blocks newly pinned by cache retention.", pins.pinned);
  single("kv_pin_refreshes_total", "counter", "Prefix-cache hits on a pinned block (each renews its TTL).", pins.refreshed);
  single("kv_pin_expirations_total", "counter", "Pins whose TTL ran out.", pins.expired);
  single("kv_pin_yields_total", "counter", "Idle pinned blocks given to a request under memory pressure before their TTL ran out.",
         pins.yielded);
  prometheus_header(out, "kv_pin_denied_total", "counter", "Blocks asked to be pinned but only cached: the org's quota or the pool's limit was full.");
  out += fmt::format("tern:kv_pin_denied_total{{{},reason=\"quota\"}} {}\n", l, pins.denied_quota);
  out += fmt::format("tern:kv_pin_denied_total{{{},reason=\"pool\"}} {}\n", l, pins.denied_pool);
  prometheus_header(out, "prefix_cache_write_tokens_total", "counter", "Prompt tokens computed and pinned (cache writes), by retention TTL.");
  for (const auto& [ttl, tokens] : cache_write_tokens_) {
    out += fmt::format("tern:prefix_cache_write_tokens_total{{{},ttl_seconds=\"{}\"}} {}\n", l, ttl, tokens);
  }
  single("kv_evictions_total", "counter", "Cached KV blocks dropped from RAM to make room (LRU).", gauges_.ram_evictions);
  if (gauges_.disk) {
    const DiskTierStats& d = *gauges_.disk;
    single("kv_disk_hit_tokens_total", "counter", "Prompt tokens read back from the KV disk tier instead of computed.", gauges_.disk_hit_tokens);
    single("kv_disk_blocks", "gauge", "KV blocks in the disk tier.", d.store.blocks);
    single("kv_disk_bytes", "gauge", "Bytes of the disk tier's files.", d.store.bytes);
    single("kv_disk_writes_total", "counter", "KV blocks written to the disk tier.", d.store.writes);
    single("kv_disk_read_seconds_per_block", "gauge", "Moving average of one verified block read.", d.read_seconds_per_block);
    prometheus_header(out, "kv_disk_lookups_total", "counter", "Disk-tier lookups of a block missing from RAM, by result.");
    out += fmt::format("tern:kv_disk_lookups_total{{{},result=\"hit\"}} {}\n", l, d.store.hits);
    out += fmt::format("tern:kv_disk_lookups_total{{{},result=\"miss\"}} {}\n", l, d.store.misses);
    out += fmt::format("tern:kv_disk_lookups_total{{{},result=\"corrupt\"}} {}\n", l, d.store.corrupt);
    single("kv_disk_read_bytes_total", "counter", "Bytes of KV read back from the disk tier (verified blocks).",
           d.store.hits * d.block_bytes);
    prometheus_header(out, "kv_disk_skipped_total", "counter", "Disk-tier blocks not written or not read, by reason.");
    out += fmt::format("tern:kv_disk_skipped_total{{{},reason=\"queue_full\"}} {}\n", l, d.store.dropped);
    out += fmt::format("tern:kv_disk_skipped_total{{{},reason=\"write_error\"}} {}\n", l, d.store.write_errors);
    out += fmt::format("tern:kv_disk_skipped_total{{{},reason=\"recompute_faster\"}} {}\n", l, d.declined_slower);
    prometheus_header(out, "kv_disk_evictions_total", "counter", "Disk-tier blocks removed, by reason.");
    out += fmt::format("tern:kv_disk_evictions_total{{{},reason=\"capacity\"}} {}\n", l, d.store.evictions);
    out += fmt::format("tern:kv_disk_evictions_total{{{},reason=\"corrupt\"}} {}\n", l, d.store.corrupt);
  }
  single("prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", prompt_tokens_);
  single("generation_tokens_total", "counter", "Generated tokens.", generation_tokens_);
  single("num_preemptions_total", "counter", "Requests preempted (KV blocks freed, recomputed later).", preemptions_);
  single("itl_target_seconds", "gauge", "The scheduler's inter-token target as a time (--itl-target 100ms); 0: not in this form.",
         itl_target_s_);
  single("itl_target_factor", "gauge",
         "The scheduler's inter-token target as a multiple of the decode-only step (--itl-target 1.4x); 0: not in this form.",
         itl_target_factor_);
  single("grammar_masks_total", "counter", "Token masks computed for constrained requests (response_format, tools): one per sampled token.",
         grammar_masks_);
  single("grammar_mask_fill_seconds_total", "counter", "Time computing those masks, on a thread of its own while the forward pass runs.",
         grammar_fill_s_);
  single("grammar_mask_critical_seconds_total", "counter",
         "Time steps spent on masks after their forward pass: waiting for the fill to finish, and applying masks to the logits.",
         grammar_critical_s_);
  single("spec_decode_num_drafts_total", "counter", "Speculative decoding: a request's step that verified guesses.", spec_drafts_);
  single("spec_decode_num_draft_tokens_total", "counter", "Speculative decoding: guessed tokens verified.", spec_draft_tokens_);
  single("spec_decode_num_accepted_tokens_total", "counter", "Speculative decoding: guessed tokens accepted.", spec_accepted_tokens_);
  single("itl_limited_steps_total", "counter", "Steps whose prompt chunk was cut to keep under --itl-target.", itl_limited_steps_);
  single("step_time_predicted_seconds", "gauge", "The step-time model's estimate for the last step.", last_step_.predicted_seconds);
  single("step_time_last_seconds", "gauge", "Measured wall time of the last step.", last_step_.measured_seconds);
  single("step_prefill_chunk_tokens", "gauge", "Prompt tokens the scheduler put into the last step.", last_step_.num_prefill_tokens);
  prometheus_header(out, "step_cost_model_seconds", "gauge",
         "The learned step-time model: fixed seconds per step, per token, per attention (query, key) pair, per row of logits.");
  out += fmt::format("tern:step_cost_model_seconds{{{},term=\"fixed\"}} {}\n", l, last_step_.cost.fixed_s);
  out += fmt::format("tern:step_cost_model_seconds{{{},term=\"per_token\"}} {}\n", l, last_step_.cost.per_token_s);
  out += fmt::format("tern:step_cost_model_seconds{{{},term=\"per_context_pair\"}} {}\n", l, last_step_.cost.per_context_s);
  out += fmt::format("tern:step_cost_model_seconds{{{},term=\"per_logit_row\"}} {}\n", l, last_step_.cost.per_logit_row_s);
  prometheus_header(out, "request_success_total", "counter", "Finished requests by finish reason.");
  for (const auto& [reason, count] : finished_) {
    out += fmt::format("tern:request_success_total{{{},finished_reason=\"{}\"}} {}\n", l, reason, count);
  }
  const auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    prometheus_header(out, name, "histogram", help);
    h.render(out, fmt::format("tern:{}", name), l);
  };
  histogram("time_to_first_token_seconds", "Arrival to first generated token.", ttft_);
  histogram("inter_token_latency_seconds", "Between consecutive generated tokens of a request.", itl_);
  histogram("e2e_request_latency_seconds", "Arrival to finish.", e2e_);
  histogram("request_queue_time_seconds", "Arrival to first scheduled.", queue_);
  histogram("request_prefill_time_seconds", "First scheduled to first token.", prefill_);
  histogram("request_decode_time_seconds", "First token to finish.", decode_);
  histogram("iteration_tokens_total", "Tokens computed per engine step.", step_tokens_);
  histogram("request_prompt_tokens", "Prompt tokens per finished request.", request_prompt_tokens_);
  histogram("step_time_seconds", "Measured wall time of each engine step (forward pass and sampling).", step_seconds_);
  histogram("step_prefill_tokens", "Prompt tokens per step that carried any.", step_prefill_tokens_);
  histogram("step_time_prediction_error_seconds", "Measured minus predicted step time.", step_prediction_error_);
  histogram("request_generation_tokens", "Generated tokens per finished request.", request_generation_tokens_);
  histogram("spec_decode_acceptance_rate", "Speculative decoding: each finished request's share of its guesses accepted.", spec_acceptance_rate_);
  histogram("spec_decode_tokens_per_step", "Speculative decoding: tokens a request gained in a step that verified guesses (accepted + 1).",
            spec_tokens_per_step_);
  if (lora_.max_lora > 0) {
    // vLLM's shape: the value is the time of the update, the state is in the labels.
    prometheus_header(out, "lora_requests_info", "gauge", "Adapters of running and waiting requests (labels), and the adapter limit.");
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    out += fmt::format("tern:lora_requests_info{{{},running_lora_adapters=\"{}\",waiting_lora_adapters=\"{}\",max_lora=\"{}\"}} {:.3f}\n", l,
                       lora_.running, lora_.waiting, lora_.max_lora, now);
    const auto per_adapter = [&](const char* name, const char* help, int64_t LoraCounts::*field) {
      prometheus_header(out, name, "counter", help);
      for (const auto& [adapter, counts] : lora_counts_) out += fmt::format("tern:{}{{{},lora_name=\"{}\"}} {}\n", name, l, adapter, counts.*field);
    };
    per_adapter("lora_requests_total", "Finished requests by LoRA adapter.", &LoraCounts::requests);
    per_adapter("lora_prompt_tokens_total", "Prompt tokens of finished requests by LoRA adapter.", &LoraCounts::prompt_tokens);
    per_adapter("lora_generation_tokens_total", "Generated tokens of finished requests by LoRA adapter.", &LoraCounts::generation_tokens);
  }
  return out;
}

}  // namespace tern::engine
