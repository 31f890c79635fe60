#include "observe/request_log.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace tern::observe {

std::string short_hash(std::string_view text) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", h);
}

std::string RequestLog::format(const RequestLogEntry& entry, bool log_content) {
  const metering::LedgerRow& row = entry.row;
  nlohmann::ordered_json j;
  j["timestamp"] = entry.arrival_s;
  j["request_id"] = row.request_id;
  if (!row.key_id.empty()) j["key_id"] = row.key_id;
  if (!row.org.empty()) j["org"] = row.org;
  j["model"] = row.model;
  if (!row.deployment.empty()) j["deployment"] = row.deployment;
  if (!entry.adapter.empty()) j["adapter"] = entry.adapter;
  if (!entry.region.empty()) j["region"] = entry.region;
  j["status"] = row.status;
  j["finish_reason"] = row.finish_reason;
  j["prompt_tokens"] = row.prompt_tokens;
  j["cached_tokens"] = row.cached_tokens;
  j["cache_write_tokens"] = row.cache_write_tokens;
  j["completion_tokens"] = row.completion_tokens;
  j["cost_usd"] = row.cost_usd;
  if (entry.queued_ms >= 0) j["queued_ms"] = entry.queued_ms;
  if (row.ttft_ms > 0) j["ttft_ms"] = row.ttft_ms;
  j["e2e_ms"] = row.e2e_ms;
  j["end"] = entry.arrival_s + row.e2e_ms / 1000.0;
  if (!entry.prefix_hash.empty()) j["prefix_hash"] = entry.prefix_hash;
  if (!entry.session_id.empty()) j["session_id"] = entry.session_id;
  if (log_content) {
    j["request"] = entry.request;
    j["output"] = entry.output;
  }
  // Text from clients and models may hold invalid UTF-8: replaced, never a thrown exception.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Result<std::unique_ptr<RequestLog>> RequestLog::open(RequestLogOptions options) {
  if (options.path.empty()) return fail("the request log needs a file");
  if (options.max_bytes < 1024) return fail("the request log's size limit ({} bytes) is under 1 KiB", options.max_bytes);
  if (options.keep < 0 || options.keep > 1000) return fail("the request log keeps 0 to 1000 old files, not {}", options.keep);
  std::FILE* file = std::fopen(options.path.c_str(), "a");
  if (file == nullptr) return fail("cannot open the request log {}: {}", options.path, std::strerror(errno));
  std::error_code ec;
  const auto size = static_cast<int64_t>(std::filesystem::file_size(options.path, ec));
  return std::unique_ptr<RequestLog>(new RequestLog(std::move(options), file, ec ? 0 : size));
}

RequestLog::RequestLog(RequestLogOptions options, std::FILE* file, int64_t size)
    : options_(std::move(options)), file_(file), size_(size), thread_([this] { run(); }) {}

RequestLog::~RequestLog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (file_ != nullptr) std::fclose(file_);
}

void RequestLog::append(RequestLogEntry entry) {
  {
    std::lock_guard lock(mutex_);
    ++appended_;
    if (queue_.size() >= options_.max_queued) {
      ++stats_.dropped;
      ++done_;
      return;
    }
    queue_.push_back(std::move(entry));
  }
  wake_.notify_one();
}

void RequestLog::flush() {
  std::unique_lock lock(mutex_);
  const uint64_t target = appended_;
  written_.wait(lock, [&] { return done_ >= target; });
}

RequestLogStats RequestLog::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void RequestLog::rotate() {
  std::fclose(file_);
  file_ = nullptr;
  std::error_code ec;
  if (options_.keep == 0) {
    std::filesystem::remove(options_.path, ec);
  } else {
    std::filesystem::remove(fmt::format("{}.{}", options_.path, options_.keep), ec);
    for (int i = options_.keep - 1; i >= 1; --i) {
      const std::string from = fmt::format("{}.{}", options_.path, i);
      if (std::filesystem::exists(from, ec)) std::filesystem::rename(from, fmt::format("{}.{}", options_.path, i + 1), ec);
    }
    std::filesystem::rename(options_.path, options_.path + ".1", ec);
  }
  if (ec) {
    std::fprintf(stderr, "tern serve: request log: rotating %s: %s\n", options_.path.c_str(), ec.message().c_str());
    std::lock_guard lock(mutex_);
    ++stats_.errors;
  }
  file_ = std::fopen(options_.path.c_str(), "a");
  size_ = 0;
  std::lock_guard lock(mutex_);
  ++stats_.rotations;
}

void RequestLog::write_line(const std::string& line) {
  if (file_ != nullptr && size_ > 0 && size_ + static_cast<int64_t>(line.size()) > options_.max_bytes) rotate();
  if (file_ == nullptr) file_ = std::fopen(options_.path.c_str(), "a");  // a failed rotation: try again
  if (file_ == nullptr || std::fwrite(line.data(), 1, line.size(), file_) != line.size()) {
    std::lock_guard lock(mutex_);
    if (stats_.errors++ == 0) std::fprintf(stderr, "tern serve: request log: cannot write %s: %s\n", options_.path.c_str(), std::strerror(errno));
    return;
  }
  size_ += static_cast<int64_t>(line.size());
  std::lock_guard lock(mutex_);
  ++stats_.lines;
}

void RequestLog::run() {
  std::unique_lock lock(mutex_);
  std::deque<RequestLogEntry> batch;
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) break;  // stopping, and everything written
    batch.swap(queue_);
    lock.unlock();
    for (const RequestLogEntry& entry : batch) write_line(format(entry, options_.log_content) + "\n");
    if (file_ != nullptr) std::fflush(file_);
    const size_t count = batch.size();
    batch.clear();
    lock.lock();
    done_ += count;
    written_.notify_all();
  }
}

}  // namespace tern::observe
