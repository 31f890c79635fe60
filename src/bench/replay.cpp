#include "bench/replay.h"

#include <algorithm>
#include <map>

#include <nlohmann/json.hpp>

#include "bench/jsonl.h"

namespace tern::bench {

using nlohmann::json;

Result<std::vector<LoggedRequest>> read_request_log(const std::string& path) {
  std::vector<LoggedRequest> entries;
  const std::string what = fmt::format("request log '{}'", path);
  auto ok = for_each_jsonl_object(path, what, [&](const json& row, size_t line_number) -> Result<void> {
    for (const char* key : {"timestamp", "prompt_tokens", "completion_tokens"}) {
      if (!row.contains(key) || !row[key].is_number()) return fail("{} line {}: missing numeric '{}'", what, line_number, key);
    }
    // A request refused before any model saw it (tern serve logs those too) has no shape to replay.
    if (row.contains("status") && row["status"].is_number_integer()) {
      const int64_t status = row["status"].get<int64_t>();
      if ((status < 200 || status >= 300) && row["prompt_tokens"].get<int64_t>() == 0) return {};
    }
    LoggedRequest entry;
    entry.timestamp = row["timestamp"].get<double>();
    entry.prompt_tokens = row["prompt_tokens"].get<int64_t>();
    entry.completion_tokens = row["completion_tokens"].get<int64_t>();
    if (row.contains("cached_tokens") && row["cached_tokens"].is_number()) entry.cached_tokens = row["cached_tokens"].get<int64_t>();
    // A LoRA adapter is addressed by its served name, so the adapter (when present) is what a replay sends.
    if (row.contains("adapter") && row["adapter"].is_string()) entry.model = row["adapter"].get<std::string>();
    else if (row.contains("model") && row["model"].is_string()) entry.model = row["model"].get<std::string>();
    if (row.contains("prefix_hash") && row["prefix_hash"].is_string()) entry.prefix_hash = row["prefix_hash"].get<std::string>();
    if (row.contains("session_id") && row["session_id"].is_string()) entry.session_id = row["session_id"].get<std::string>();
    entries.push_back(std::move(entry));
    return {};
  });
  if (!ok) return std::unexpected(ok.error());
  if (entries.size() < 2) return fail("request log '{}': needs at least 2 requests, has {}", path, entries.size());
  std::sort(entries.begin(), entries.end(), [](const LoggedRequest& a, const LoggedRequest& b) { return a.timestamp < b.timestamp; });
  return entries;
}

Result<std::shared_ptr<const ReplayTrace>> load_replay(const std::string& path) {
  auto logged = read_request_log(path);
  if (!logged) return std::unexpected(logged.error());
  auto trace = std::make_shared<ReplayTrace>();
  trace->path = path;
  const double start = logged->front().timestamp;
  trace->span_s = logged->back().timestamp - start;
  // Prefix groups: the least cached among a hash's requests, below every one of its prompts.
  std::map<std::string, int64_t> least_cached;
  for (const LoggedRequest& r : *logged) {
    if (r.prefix_hash.empty()) continue;
    const int64_t cached = std::clamp<int64_t>(r.cached_tokens, 0, std::max<int64_t>(r.prompt_tokens - 1, 0));
    auto [it, inserted] = least_cached.emplace(r.prefix_hash, cached);
    if (!inserted) it->second = std::min(it->second, cached);
  }
  std::map<std::string, int> group_of;
  for (const auto& [hash, cached] : least_cached) {
    if (cached <= 0) continue;
    group_of[hash] = static_cast<int>(trace->prefix_tokens.size());
    trace->prefix_tokens.push_back(static_cast<int>(cached));
  }
  for (const LoggedRequest& r : *logged) {
    ReplayedRequest out;
    out.offset_s = r.timestamp - start;
    out.prompt_tokens = static_cast<int>(std::clamp<int64_t>(r.prompt_tokens, 1, 1 << 24));
    out.output_tokens = static_cast<int>(std::clamp<int64_t>(r.completion_tokens, 1, 1 << 24));
    if (auto it = group_of.find(r.prefix_hash); it != group_of.end()) out.prefix_group = it->second;
    out.model = r.model;
    trace->requests.push_back(std::move(out));
  }
  return std::shared_ptr<const ReplayTrace>(std::move(trace));
}

}  // namespace tern::bench
