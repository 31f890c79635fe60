#include "tool_calls/parser.h"

#include <algorithm>
#include <random>

namespace tern::tool_calls {
namespace {

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

/// The length of the longest end of `text` that `word` starts with (a word cut by the stream).
size_t partial_suffix(std::string_view text, std::string_view word) {
  for (size_t n = std::min(text.size(), word.size() - 1); n > 0; --n) {
    if (word.starts_with(text.substr(text.size() - n))) return n;
  }
  return 0;
}

/// A small cursor over the call header: `{"name": "NAME", "arguments": ` with any whitespace.
struct HeaderReader {
  std::string_view text;
  size_t at = 0;

  enum class Result { kOk, kMore, kBad };
  void skip_space() { while (at < text.size() && is_space(text[at])) ++at; }
  Result literal(std::string_view word) {
    skip_space();
    const size_t n = std::min(word.size(), text.size() - at);
    if (text.substr(at, n) != word.substr(0, n)) return Result::kBad;
    if (n < word.size()) return Result::kMore;
    at += n;
    return Result::kOk;
  }
  Result string(std::string& out) {  // tool names: no escapes
    skip_space();
    if (at == text.size()) return Result::kMore;
    if (text[at] != '"') return Result::kBad;
    const size_t end = text.find('"', at + 1);
    if (end == std::string_view::npos) return text.find('\\', at) == std::string_view::npos ? Result::kMore : Result::kBad;
    out.assign(text.substr(at + 1, end - at - 1));
    if (out.find('\\') != std::string::npos) return Result::kBad;
    at = end + 1;
    return Result::kOk;
  }
};

}  // namespace

std::string new_call_id() {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[random() % kAlphabet.size()];
  return id;
}

ToolCallParser::ToolCallParser(Format format) : format_(std::move(format)) {}

ToolCallParser::Output ToolCallParser::push(std::string_view text) {
  pending_ += text;
  Output out;
  for (;;) {
    const State before = state_;
    const size_t size_before = pending_.size();
    switch (state_) {
      case State::kText: on_text(out); break;
      case State::kHeader: if (!on_header(out)) return out; break;
      case State::kArguments: on_arguments(out); break;
      case State::kSuffix: if (!on_suffix()) return out; break;
    }
    if (state_ == before && pending_.size() == size_before) return out;  // needs more output
  }
}

ToolCallParser::Output ToolCallParser::finish() {
  Output out;
  if (state_ == State::kHeader) out.text = std::move(space_before_call_);
  if (state_ == State::kText || state_ == State::kHeader) out.text += pending_;
  pending_.clear();
  state_ = State::kText;
  return out;
}

void ToolCallParser::on_text(Output& out) {
  const size_t trigger = pending_.find(format_.trigger);
  if (trigger != std::string::npos) {
    size_t end = trigger;
    while (end > 0 && is_space(pending_[end - 1])) --end;
    out.text.append(pending_, 0, end);
    space_before_call_.assign(pending_, end, trigger - end);
    pending_.erase(0, trigger);
    state_ = State::kHeader;
    return;
  }
  // Hold back what may be the start of a trigger, and whitespace that may come before one.
  size_t keep = partial_suffix(pending_, format_.trigger);
  size_t end = pending_.size() - keep;
  while (end > 0 && is_space(pending_[end - 1])) --end;
  out.text.append(pending_, 0, end);
  pending_.erase(0, end);
}

bool ToolCallParser::on_header(Output& out) {
  // The trigger is in pending_; the header starts at it (Hermes: after "<tool_call>"; Llama: "{").
  HeaderReader reader{pending_};
  using R = HeaderReader::Result;
  const bool is_tagged = format_.trigger.starts_with('<');
  std::string name;
  std::string key;
  // Each part in turn, while the ones before it were read whole.
  R result = is_tagged ? reader.literal(format_.trigger) : R::kOk;
  const auto then = [&](auto&& read) {
    if (result == R::kOk) result = read();
  };
  then([&] { return reader.literal("{"); });
  then([&] { return reader.literal("\"name\""); });
  then([&] { return reader.literal(":"); });
  then([&] { return reader.string(name); });
  then([&] { return reader.literal(","); });
  then([&] { return reader.string(key); });
  then([&] { return key == "arguments" || key == "parameters" ? R::kOk : R::kBad; });
  then([&] { return reader.literal(":"); });
  if (result == R::kMore) return false;
  if (result == R::kBad || name.empty()) {
    // Not a call after all: the trigger is text, and scanning goes on past it.
    out.text += space_before_call_ + format_.trigger;
    pending_.erase(0, format_.trigger.size());
    state_ = State::kText;
    return true;
  }
  out.calls.push_back({.index = num_calls_, .id = new_call_id(), .name = std::move(name), .arguments = {}});
  ++num_calls_;
  pending_.erase(0, reader.at);
  state_ = State::kArguments;
  depth_ = 0;
  in_string_ = escaped_ = value_started_ = false;
  return true;
}

void ToolCallParser::on_arguments(Output& out) {
  std::string& arguments = out.calls.empty() || out.calls.back().index != num_calls_ - 1
                               ? out.calls.emplace_back(wire::ToolCallDelta{.index = num_calls_ - 1, .id = {}, .name = {}, .arguments = {}}).arguments
                               : out.calls.back().arguments;
  size_t i = 0;
  if (!value_started_) {
    while (i < pending_.size() && is_space(pending_[i])) ++i;
    if (i < pending_.size()) value_started_ = true;
  }
  const size_t start = i;
  bool is_complete = false;
  for (; i < pending_.size() && !is_complete; ++i) {
    const char c = pending_[i];
    if (in_string_) {
      if (escaped_) escaped_ = false;
      else if (c == '\\') escaped_ = true;
      else if (c == '"') in_string_ = false;
    } else if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if (c == '}' || c == ']') {
      is_complete = --depth_ <= 0;
    }
  }
  arguments.append(pending_, start, i - start);
  if (arguments.empty() && out.calls.back().name.empty()) out.calls.pop_back();
  pending_.erase(0, i);
  if (is_complete) state_ = State::kSuffix;
}

bool ToolCallParser::on_suffix() {
  // The rest of the call after its arguments: "}" (and "</tool_call>" for tagged formats), whitespace
  // anywhere between.
  size_t i = 0;
  for (char expected : format_.call_suffix) {
    if (is_space(expected)) continue;
    while (i < pending_.size() && is_space(pending_[i])) ++i;
    if (i == pending_.size()) return false;
    if (pending_[i] != expected) break;  // not the suffix (possible only without a grammar): text again
    ++i;
  }
  pending_.erase(0, i);
  state_ = State::kText;
  return true;
}

}  // namespace tern::tool_calls
