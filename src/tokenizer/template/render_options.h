#pragma once
// Knobs for one render: the clock `strftime_now` reads, and the limits that keep a hostile template
// (templates ship inside downloaded model files) from hanging the server or exhausting its memory.

#include <chrono>
#include <cstddef>
#include <optional>

namespace tern::chat {

/// Bounds on the work one render may do. Chat templates for real models stay orders of magnitude
/// below every one of these; a render that crosses one fails with an error naming the limit.
struct RenderLimits {
  /// Size of the rendered prompt, and of any single string or list built on the way.
  size_t max_output_bytes = size_t{16} << 20;
  /// Bytes of strings built in total (concatenation, join, tojson, ...), so that quadratic string
  /// building in a loop stops long before it becomes slow.
  size_t max_built_bytes = size_t{256} << 20;
  /// Loop iterations plus macro calls in total.
  size_t max_iterations = 1'000'000;
  /// Nesting of macro calls (recursion).
  int max_call_depth = 64;
};

struct RenderOptions {
  /// The time `strftime_now(format)` formats, taken as UTC. Unset: the current local time, which is
  /// what HF's `datetime.now().strftime(format)` gives. Set it to make renders reproducible.
  std::optional<std::chrono::sys_seconds> now;
  RenderLimits limits;
};

}  // namespace tern::chat
