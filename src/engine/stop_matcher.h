#pragma once
// Stop strings over streamed text. Text is released only once no stop string can still start in it:
// the last (longest stop - 1) bytes wait for the next piece, so a stop string split across tokens
// is found and never sent. Held text is cut at a UTF-8 character boundary.

#include <string>
#include <string_view>
#include <vector>

namespace tern::engine {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  struct Step {
    std::string text;      ///< safe to emit now
    bool stopped = false;  ///< a stop string matched; `text` ends just before it
    std::string matched;   ///< with stopped: the stop string (the earliest in the text; the first given at a tie)
  };
  Step push(std::string_view piece);
  /// The held-back text, at the end of generation.
  std::string flush();

 private:
  std::vector<std::string> stops_;
  size_t hold_ = 0;
  std::string pending_;
};

}  // namespace tern::engine
