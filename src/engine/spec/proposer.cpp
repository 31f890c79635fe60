#include "engine/spec/proposer.h"

#include <fmt/format.h>

#include <filesystem>

#include "engine/spec/draft_model.h"
#include "engine/spec/ngram_proposer.h"

namespace tern::engine {

Result<void> SpeculationConfig::validate() const {
  if (ngram_min < 1 || ngram_min > 64) return fail("the shortest n-gram ({}) must be between 1 and 64", ngram_min);
  if (ngram_max < ngram_min || ngram_max > 64) {
    return fail("the longest n-gram ({}) must be between the shortest ({}) and 64", ngram_max, ngram_min);
  }
  if (max_draft < 1 || max_draft > 64) return fail("the draft length ({}) must be between 1 and 64", max_draft);
  if (min_draft < 0 || min_draft > max_draft) return fail("the least draft verified ({}) must be between 0 and the draft length ({})", min_draft, max_draft);
  if (method == SpeculationMethod::kDraft && draft_model.empty()) return fail("speculation with a draft model needs the draft model's file");
  if (method != SpeculationMethod::kDraft && !draft_model.empty()) {
    return fail("a draft model ({}) is given but the speculation method is {}: use draft", draft_model, speculation_method_name(method));
  }
  return {};
}

Result<SpeculationMethod> parse_speculation_method(const std::string& name) {
  if (name == "off") return SpeculationMethod::kOff;
  if (name == "ngram") return SpeculationMethod::kNgram;
  if (name == "draft") return SpeculationMethod::kDraft;
  return fail("unknown speculation method '{}': use off, ngram or draft", name);
}

const char* speculation_method_name(SpeculationMethod method) {
  switch (method) {
    case SpeculationMethod::kOff: return "off";
    case SpeculationMethod::kNgram: return "ngram";
    case SpeculationMethod::kDraft: return "draft";
  }
  return "off";
}

std::string describe_speculation(const SpeculationConfig& config) {
  if (config.method == SpeculationMethod::kOff) return "off";
  if (config.method == SpeculationMethod::kDraft) {
    return fmt::format("draft model {} (up to {} guesses{})", std::filesystem::path(config.draft_model).filename().string(),
                       config.max_draft, config.is_default_on ? "" : ", opt-in");
  }
  return fmt::format("{} ({}-{}, up to {} guesses{})", speculation_method_name(config.method), config.ngram_min, config.ngram_max,
                     config.max_draft, config.is_default_on ? "" : ", opt-in");
}

std::unique_ptr<DraftProposer> make_draft_proposer(const SpeculationConfig& config, DraftModel* draft) {
  switch (config.method) {
    case SpeculationMethod::kOff: return nullptr;
    case SpeculationMethod::kNgram: return std::make_unique<NgramProposer>(config.ngram_min, config.ngram_max);
    case SpeculationMethod::kDraft: return draft != nullptr ? draft->make_proposer() : nullptr;
  }
  return nullptr;
}

}  // namespace tern::engine
