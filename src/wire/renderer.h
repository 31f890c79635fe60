#pragma once
// How a schema adapter writes neutral events back to its client: the bytes of a stream (SSE) or one
// whole response, and errors in its own shape. One renderer per request; the gateway drives it on
// the connection's strand.

#include <string>
#include <vector>

#include "wire/types.h"
#include "http/server.h"

namespace tern::wire {

class Renderer {
 public:
  virtual ~Renderer() = default;
  /// The response's id (chatcmpl-..., msg_...): also the ledger's request id.
  virtual const std::string& id() const = 0;
  /// Bytes that open a stream, sent with the first event (its model and deployment say who answered;
  /// its usage, where the provider knows them already, the prompt's token counts).
  virtual std::string stream_start(const Event& first) = 0;
  /// SSE bytes for one event; the last event's bytes also close the stream ([DONE], message_stop).
  virtual std::string stream_event(const Event& event) = 0;
  /// An error after the stream began, closing it (never a silent truncation).
  virtual std::string stream_error(const ApiError& error) = 0;
  /// The whole non-streamed response from everything the events carried.
  virtual std::string full_response(const Reply& reply, const Event& last) = 0;
  /// An error response, before anything was sent.
  virtual http::Response error_response(const ApiError& error) const = 0;
};

}  // namespace tern::wire
