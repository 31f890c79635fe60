#include "http/chunked_decoder.h"

#include <charconv>

namespace tern::http {

bool ChunkedDecoder::feed(std::string_view bytes, std::string& payload) {
  size_t position = 0;
  while (position < bytes.size() && state_ != State::kDone) {
    if (state_ == State::kData) {
      const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, bytes.size() - position));
      payload.append(bytes.substr(position, take));
      position += take;
      remaining_ -= take;
      if (remaining_ == 0) state_ = State::kDataEnd;
      continue;
    }
    // The other states read CRLF-terminated lines.
    const size_t newline = bytes.find('\n', position);
    if (newline == std::string_view::npos) {
      line_.append(bytes.substr(position));
      if (line_.size() > 4096) return false;  // no sane size or trailer line is this long
      return true;
    }
    line_.append(bytes.substr(position, newline - position));
    position = newline + 1;
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    std::string line = std::move(line_);
    line_.clear();
    switch (state_) {
      case State::kSizeLine: {
        const size_t end = line.find_first_of("; \t");  // chunk extensions are ignored
        const std::string_view digits = std::string_view(line).substr(0, end);
        uint64_t size = 0;
        auto [ptr, error] = std::from_chars(digits.data(), digits.data() + digits.size(), size, 16);
        if (digits.empty() || error != std::errc{} || ptr != digits.data() + digits.size()) return false;
        remaining_ = size;
        state_ = size == 0 ? State::kTrailer : State::kData;
        break;
      }
      case State::kDataEnd:
        if (!line.empty()) return false;  // data must be followed by exactly CRLF
        state_ = State::kSizeLine;
        break;
      case State::kTrailer:
        if (line.empty()) state_ = State::kDone;
        break;
      default: break;
    }
  }
  return true;
}

}  // namespace tern::http
