#include "http/sse_parser.h"

namespace tern::http {

const std::vector<std::string>& SseParser::feed(std::string_view bytes) {
  completed_.clear();
  size_t start = 0;
  while (start < bytes.size()) {
    const size_t newline = bytes.find('\n', start);
    if (newline == std::string_view::npos) {
      partial_line_.append(bytes.substr(start));
      break;
    }
    std::string_view piece = bytes.substr(start, newline - start);
    if (!partial_line_.empty()) {
      partial_line_.append(piece);
      std::string line = std::move(partial_line_);
      partial_line_.clear();
      handle_line(line);
    } else {
      handle_line(piece);
    }
    start = newline + 1;
  }
  return completed_;
}

void SseParser::handle_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {  // blank line: dispatch the event
    if (has_data_) completed_.push_back(std::move(event_data_));
    event_data_.clear();
    has_data_ = false;
    return;
  }
  if (line.front() == ':') return;  // comment (keep-alive)
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field != "data") return;  // event:, id:, retry: carry nothing a benchmark needs
  std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (has_data_) event_data_.push_back('\n');
  event_data_.append(value);
  has_data_ = true;
}

std::string SseParser::flush() {
  if (!partial_line_.empty()) {
    std::string line = std::move(partial_line_);
    partial_line_.clear();
    handle_line(line);
  }
  std::string data = has_data_ ? std::move(event_data_) : std::string{};
  event_data_.clear();
  has_data_ = false;
  return data;
}

}  // namespace tern::http
