#pragma once
// Decoder for HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1), the framing streamed responses
// use. The client decodes the body itself, rather than through Beast's parser, so that every byte of one
// socket read is handled — and timestamped — in the handler of that read: Beast's parser hands out one
// chunk per completion, and each extra completion waits its turn in a busy event loop, which would delay
// the timestamps of chunks that arrived together.

#include <cstdint>
#include <string>
#include <string_view>

namespace tern::http {

class ChunkedDecoder {
 public:
  /// Feeds raw body bytes; appends the decoded payload to `payload`. Returns false on malformed framing.
  bool feed(std::string_view bytes, std::string& payload);
  /// The terminating zero-size chunk and its trailer section have been read.
  bool is_done() const { return state_ == State::kDone; }

 private:
  enum class State { kSizeLine, kData, kDataEnd, kTrailer, kDone };
  State state_ = State::kSizeLine;
  uint64_t remaining_ = 0;
  std::string line_;  // partial size or trailer line
};

}  // namespace tern::http
