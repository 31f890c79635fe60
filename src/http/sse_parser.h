#pragma once
// Incremental parser for Server-Sent Events (the `text/event-stream` framing OpenAI-compatible servers
// stream with). Bytes arrive in arbitrary pieces — a TCP read can end mid-line — so the parser keeps the
// partial line and reports each complete event's `data` once its terminating blank line arrives.
//
//   data: {"choices":[...]}\n\n   -> one event, data = {"choices":[...]}
//   : keep-alive comment\n         -> ignored
//   data: [DONE]\n\n               -> one event, data = [DONE] (the caller decides what it means)
//
// Multi-line data fields are joined with '\n' as the SSE spec says; CRLF and LF line ends both work.

#include <string>
#include <string_view>
#include <vector>

namespace tern::http {

class SseParser {
 public:
  /// Feeds bytes; returns the data of every event completed by them, in order. The views are valid
  /// until the next call.
  const std::vector<std::string>& feed(std::string_view bytes);

  /// Data of an event still open when the stream ended without its blank line (some servers close the
  /// stream right after the last `data:` line); empty if none.
  std::string flush();

 private:
  void handle_line(std::string_view line);

  std::string partial_line_;
  std::string event_data_;
  bool has_data_ = false;
  std::vector<std::string> completed_;
};

}  // namespace tern::http
