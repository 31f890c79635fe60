#include "engine/stop_matcher.h"

#include <algorithm>

namespace tern::engine {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stops_) hold_ = std::max(hold_, s.size() - 1);
}

StopMatcher::Step StopMatcher::push(std::string_view piece) {
  Step step;
  pending_ += piece;
  size_t first = std::string::npos;
  const std::string* matched = nullptr;
  for (const auto& stop : stops_) {
    if (const size_t at = pending_.find(stop); at < first) {
      first = at;
      matched = &stop;
    }
  }
  if (matched != nullptr) {
    step.text = pending_.substr(0, first);
    step.stopped = true;
    step.matched = *matched;
    pending_.clear();
    return step;
  }
  if (pending_.size() <= hold_) return step;
  size_t cut = pending_.size() - hold_;
  while (cut > 0 && cut < pending_.size() && (static_cast<unsigned char>(pending_[cut]) & 0xC0) == 0x80) --cut;
  step.text = pending_.substr(0, cut);
  pending_.erase(0, cut);
  return step;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace tern::engine
