#include "metering/ledger_writer.h"

#include <chrono>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "util/clock.h"

namespace tern::metering {
namespace {

std::string row_json(const LedgerRow& r) {
  return nlohmann::json{{"time_ms", r.time_ms}, {"request_id", r.request_id}, {"key_id", r.key_id}, {"org", r.org},
                        {"model", r.model}, {"deployment", r.deployment}, {"prompt_tokens", r.prompt_tokens},
                        {"cached_tokens", r.cached_tokens}, {"cache_write_tokens", r.cache_write_tokens},
                        {"completion_tokens", r.completion_tokens}, {"cost_usd", r.cost_usd}, {"ttft_ms", r.ttft_ms},
                        {"e2e_ms", r.e2e_ms}, {"status", r.status}, {"finish_reason", r.finish_reason}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

constexpr int kAttempts = 4;

}  // namespace

LedgerWriter::LedgerWriter(std::unique_ptr<LedgerStore> store, LedgerWriterOptions options)
    : store_(std::move(store)), options_(std::move(options)) {
  writer_ = std::thread([this] { write_loop(); });
  querier_ = std::thread([this] { query_loop(); });
}

LedgerWriter::~LedgerWriter() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
  {
    std::lock_guard lock(query_mutex_);
    queries_.emplace_back(nullptr);  // the stop marker, after the queries already asked for
    queries_closed_ = true;
  }
  query_wake_.notify_all();
  querier_.join();
}

void LedgerWriter::append(LedgerRow row, std::function<void()> on_durable) {
  {
    std::lock_guard lock(mutex_);
    if (callbacks_closed_) on_durable = nullptr;
    queue_.push_back({std::move(row), std::move(on_durable)});
    ++appended_;
  }
  wake_.notify_one();
}

void LedgerWriter::flush() {
  std::unique_lock lock(mutex_);
  const int64_t target = appended_;
  flushed_.wait(lock, [&] { return completed_ >= target; });
}

void LedgerWriter::close_callbacks() {
  {
    std::lock_guard lock(mutex_);
    callbacks_closed_ = true;
  }
  flush();
  std::unique_lock lock(query_mutex_);
  queries_closed_ = true;
  query_idle_.wait(lock, [&] { return queries_.empty() && !query_running_; });
}

LedgerStats LedgerWriter::stats() const {
  std::lock_guard lock(mutex_);
  LedgerStats out = stats_;
  out.queued = static_cast<int64_t>(queue_.size());
  return out;
}

void LedgerWriter::run_query(std::function<void()> work) {
  {
    std::lock_guard lock(query_mutex_);
    if (queries_closed_) return;
    queries_.push_back(std::move(work));
  }
  query_wake_.notify_one();
}

void LedgerWriter::query_loop() {
  for (;;) {
    std::function<void()> work;
    {
      std::unique_lock lock(query_mutex_);
      query_running_ = false;
      query_idle_.notify_all();
      query_wake_.wait(lock, [&] { return !queries_.empty(); });
      work = std::move(queries_.front());
      queries_.pop_front();
      query_running_ = work != nullptr;
    }
    if (!work) return;
    work();
    work = nullptr;  // its captures (a connection's responder) go before the idle signal
  }
}

void LedgerWriter::write_loop() {
  std::vector<Pending> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      // Wake for rows, for shutdown, or for retention: soon while old rows remain, else every few seconds.
      const bool retention_due = options_.retention_days > 0 && next_retention_ms_ <= unix_ms();
      wake_.wait_for(lock, retention_due ? std::chrono::milliseconds(20) : std::chrono::milliseconds(5000),
                     [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty() && stopping_) return;
      const size_t take = std::min(queue_.size(), options_.max_batch_rows);
      batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.begin() + static_cast<std::ptrdiff_t>(take)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
    }
    if (!batch.empty()) commit(batch);
    batch.clear();
    apply_retention();
  }
}

void LedgerWriter::commit(std::vector<Pending>& batch) {
  std::vector<LedgerRow> rows;
  rows.reserve(batch.size());
  for (const Pending& p : batch) rows.push_back(p.row);
  const auto start = std::chrono::steady_clock::now();
  Result<void> written;
  int errors = 0;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    written = store_->append(rows);
    if (written) break;
    ++errors;
    std::fprintf(stderr, "tern: ledger: writing %zu rows failed (attempt %d of %d): %s\n", rows.size(), attempt + 1, kAttempts,
                 written.error().message.c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(50 << attempt));
  }
  int64_t spilled = 0;
  int64_t written_rows = written ? static_cast<int64_t>(rows.size()) : 0;
  if (!written) {
    // One bad row must not cost the others: write them one by one, and keep only the refused ones
    // aside (a store that is down refuses them all, quickly).
    std::vector<LedgerRow> refused;
    for (const LedgerRow& r : rows) {
      if (rows.size() > 1 && store_->append(std::span(&r, 1))) {
        ++written_rows;
      } else {
        refused.push_back(r);
      }
    }
    // Never lose a row: keep it where an operator can replay it.
    if (!options_.spill_path.empty() && !refused.empty()) {
      std::ofstream spill(options_.spill_path, std::ios::app);
      for (const LedgerRow& r : refused) spill << row_json(r) << '\n';
      spill.flush();
      if (spill) spilled = static_cast<int64_t>(refused.size());
    }
    if (!refused.empty()) {
      std::fprintf(stderr, "tern: ledger: %zu rows could not be written; %s\n", refused.size(),
                   spilled > 0 ? ("appended to " + options_.spill_path).c_str() : "they are lost (no spill file)");
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (Pending& p : batch) {
    if (p.on_durable) p.on_durable();
  }
  {
    std::lock_guard lock(mutex_);
    completed_ += static_cast<int64_t>(batch.size());
    stats_.write_errors += errors;
    stats_.rows_written += written_rows;
    if (written) ++stats_.batches;
    stats_.rows_spilled += spilled;
    stats_.last_commit_seconds = seconds;
  }
  flushed_.notify_all();
}

void LedgerWriter::apply_retention() {
  if (options_.retention_days <= 0) return;
  const int64_t now = unix_ms();
  if (now < next_retention_ms_) return;
  const int64_t cutoff = now - options_.retention_days * 86'400'000;
  // One small batch per pass; more passes follow at once while rows remain, but queued rows go first.
  auto deleted = store_->delete_before(cutoff, options_.retention_batch_rows);
  if (!deleted) {
    std::fprintf(stderr, "tern: ledger: retention: %s\n", deleted.error().message.c_str());
    next_retention_ms_ = now + 60'000;
    return;
  }
  {
    std::lock_guard lock(mutex_);
    stats_.rows_deleted += *deleted;
  }
  next_retention_ms_ = *deleted >= options_.retention_batch_rows ? now : now + 60'000;
}

}  // namespace tern::metering
