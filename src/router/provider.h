#pragma once
// What the router chooses among: something that turns a neutral request into a stream of neutral
// events. The local engine, a remote OpenAI-compatible endpoint and a remote Anthropic endpoint are
// all Providers; the router knows them only through this interface.

#include <expected>
#include <memory>
#include <string>

#include "wire/types.h"

namespace tern::router {

/// A request in progress. cancel() may be called from any thread, at most once; after it the sink
/// may still receive a final event (or none).
class Call {
 public:
  virtual ~Call() = default;
  virtual void cancel() = 0;
};

class Provider {
 public:
  virtual ~Provider() = default;
  /// Starts `request`; events arrive on `sink` from the provider's own thread, the last with
  /// `finished`. An error here means nothing was started (and `sink` will not be called).
  virtual std::expected<std::shared_ptr<Call>, wire::ApiError> submit(const wire::Request& request, wire::EventSink sink) = 0;
  /// Requests accepted and not yet finished.
  virtual int64_t num_in_flight() const = 0;
  /// Ends everything in flight (shutdown); their sinks get a final event.
  virtual void stop() {}
  /// False while an active health check fails: the router tries such a deployment last.
  virtual bool is_healthy() const { return true; }
};

}  // namespace tern::router
