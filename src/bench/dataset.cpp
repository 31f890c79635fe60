#include "bench/dataset.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bench/jsonl.h"

namespace tern::bench {
namespace {

using json = nlohmann::json;

constexpr uintmax_t kMaxDatasetBytes = uintmax_t{1} << 30;

std::string text_of(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  // OpenAI content parts: the text parts, joined.
  std::string out;
  if (value.is_array()) {
    for (const json& part : value) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") && part["text"].is_string()) {
        if (!out.empty()) out += "\n";
        out += part["text"].get<std::string>();
      }
    }
  }
  return out;
}

/// One row as a conversation; an error names what is wrong with it.
Result<Conversation> parse_row(const json& row) {
  if (!row.is_object()) return fail("expected an object, got {}", row.type_name());
  Conversation out;
  auto add = [&](const std::string& role, std::string text) -> Result<void> {
    if (role == "system") {
      out.system += (out.system.empty() ? "" : "\n") + text;
    } else if (role == "human" || role == "user") {
      out.turns.push_back({.user = std::move(text), .reference = {}, .output_tokens = -1});
    } else if (role == "gpt" || role == "assistant" || role == "chatgpt" || role == "bing" || role == "bard") {
      if (!out.turns.empty() && out.turns.back().reference.empty()) out.turns.back().reference = std::move(text);
    } else {
      return fail("unknown speaker '{}' (human, user, gpt, assistant, system)", role);
    }
    return {};
  };
  if (row.contains("conversations") || row.contains("messages")) {
    const bool is_sharegpt = row.contains("conversations");
    const json& list = is_sharegpt ? row["conversations"] : row["messages"];
    if (!list.is_array()) return fail("'{}' must be an array", is_sharegpt ? "conversations" : "messages");
    for (const json& message : list) {
      if (!message.is_object()) return fail("a message must be an object");
      const char* who = is_sharegpt ? "from" : "role";
      const char* what = is_sharegpt ? "value" : "content";
      if (!message.contains(who) || !message[who].is_string()) return fail("a message needs '{}'", who);
      if (auto ok = add(message[who].get<std::string>(), message.contains(what) ? text_of(message[what]) : std::string()); !ok) {
        return std::unexpected(ok.error());
      }
    }
  } else if (row.contains("prompt")) {
    if (!row["prompt"].is_string()) return fail("'prompt' must be a string");
    DatasetTurn turn{.user = row["prompt"].get<std::string>(), .reference = {}, .output_tokens = -1};
    for (const char* key : {"output_tokens", "max_tokens"}) {
      if (row.contains(key)) {
        if (!row[key].is_number_integer() || row[key].get<int64_t>() < 1 || row[key].get<int64_t>() > (1 << 24)) {
          return fail("'{}' must be a positive integer", key);
        }
        turn.output_tokens = row[key].get<int>();
      }
    }
    if (row.contains("completion") && row["completion"].is_string()) turn.reference = row["completion"].get<std::string>();
    out.turns.push_back(std::move(turn));
  } else {
    return fail("a row needs 'conversations' (ShareGPT), 'messages' (OpenAI) or 'prompt'");
  }
  return out;
}

}  // namespace

Result<std::shared_ptr<Dataset>> load_dataset(const std::string& path) {
  std::error_code error;
  const uintmax_t size = std::filesystem::file_size(path, error);
  if (error) return fail("dataset '{}': {}", path, error.message());
  if (size > kMaxDatasetBytes) return fail("dataset '{}': {} bytes; at most 1 GiB is read (sample it first)", path, size);
  auto dataset = std::make_shared<Dataset>();
  dataset->path = path;
  auto take = [&](const json& row, size_t where) -> Result<void> {
    ++dataset->num_rows;
    auto conversation = parse_row(row);
    if (!conversation) return fail("dataset '{}' row {}: {}", path, where, conversation.error().message);
    std::erase_if(conversation->turns, [](const DatasetTurn& t) { return t.user.empty(); });
    if (conversation->turns.empty()) {
      ++dataset->num_unusable;
      return {};
    }
    dataset->conversations.push_back(std::move(*conversation));
    return {};
  };
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("dataset '{}': cannot open", path);
  char first = 0;
  while (in.get(first) && std::isspace(static_cast<unsigned char>(first))) {
  }
  if (first == '[') {
    in.seekg(0);
    json rows = json::parse(in, nullptr, false);
    if (rows.is_discarded() || !rows.is_array()) return fail("dataset '{}': not a valid JSON array", path);
    for (size_t i = 0; i < rows.size(); ++i) {
      if (auto ok = take(rows[i], i + 1); !ok) return std::unexpected(ok.error());
    }
  } else {
    in.close();
    auto ok = for_each_jsonl_object(path, fmt::format("dataset '{}'", path), [&](const json& row, size_t line) { return take(row, line); });
    if (!ok) return std::unexpected(ok.error());
  }
  if (dataset->conversations.empty()) return fail("dataset '{}': no row with user text ({} rows read)", path, dataset->num_rows);
  return dataset;
}

Result<void> fit_dataset(Dataset& dataset, const PromptBuilder& builder, int max_prompt_tokens) {
  dataset.max_prompt_tokens = max_prompt_tokens;
  std::vector<Conversation> kept;
  for (Conversation& conversation : dataset.conversations) {
    int64_t history = conversation.system.empty() ? 0 : builder.count_tokens(conversation.system);
    size_t fits = conversation.turns.size();
    for (size_t i = 0; i < conversation.turns.size(); ++i) {
      DatasetTurn& turn = conversation.turns[i];
      const int reference_tokens = turn.reference.empty() ? -1 : builder.count_tokens(turn.reference);
      if (turn.output_tokens < 0 && reference_tokens > 0) turn.output_tokens = reference_tokens;
      history += builder.count_tokens(turn.user);
      if (max_prompt_tokens > 0 && history > max_prompt_tokens && fits == conversation.turns.size()) fits = i;
      history += std::max(reference_tokens, 0);
    }
    if (fits == 0) {
      ++dataset.num_dropped_long;
      continue;
    }
    if (fits < conversation.turns.size()) {
      ++dataset.num_cut;
      conversation.turns.resize(fits);
    }
    kept.push_back(std::move(conversation));
  }
  dataset.conversations = std::move(kept);
  if (dataset.conversations.empty()) {
    return fail("dataset '{}': every conversation's first prompt is over --max-prompt-tokens {}", dataset.path, max_prompt_tokens);
  }
  return {};
}

}  // namespace tern::bench
