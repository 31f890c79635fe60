#pragma once
// Constrained decoding: a grammar that decides, before each sampled token of a request, which tokens
// may come next (a mask over the vocabulary, applied to the logits by the engine), so that the output
// always parses as what was asked for — JSON valid against a JSON Schema (OpenAI's response_format).
//
// The engine is xgrammar's C++ core (tools/build_xgrammar.sh builds it from its pinned PyPI source
// distribution): it compiles a schema into a grammar over the model's vocabulary once (compilations
// are cached by schema), and a matcher per request walks it token by token:
//
//   GrammarCompiler (one per loaded model: the vocabulary as raw token bytes, the end-of-generation ids)
//     └─ json_schema(text) ─► CompiledGrammar (cached) ─► TokenConstraint per request
//          engine step: fill_mask ─► logits of masked tokens = -inf ─► sample ─► accept(token)
//
// End-of-generation tokens are allowed only where the grammar is complete, so a constrained request
// ends with an end token right after its last JSON byte (or at max_tokens, cut short as any request).

#include <condition_variable>
#include <cstdint>
#include <thread>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"
#include "util/result.h"

namespace xgrammar {
class CompiledGrammar;
class GrammarCompiler;
}  // namespace xgrammar

namespace tern::engine {

/// The error a request ends with when its grammar allows no next token: the schema it was compiled
/// from has no valid continuation there (an unsatisfiable pattern, say) — the client's fault.
inline constexpr const char* kGrammarDeadEnd = "the output's grammar allows no next token: the schema (response_format, or a tool's "
                                               "parameters) cannot be continued here (an unsatisfiable pattern or set of properties?)";

/// Schema features xgrammar compiles without keeping to (it would generate output that does not
/// validate): an object that requires a property it does not allow (required names missing from
/// `properties` with additionalProperties false). The error names the path; ok: none found.
Result<void> check_schema_keepable(const nlohmann::ordered_json& schema);

/// One request's grammar state. The engine fills the next token's mask while the forward pass runs
/// (on MaskWorker's thread), then applies it to the logits and accepts the sampled token (on its own);
/// never two of these at once for one constraint.
class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  /// Computes which tokens the grammar allows next (the expensive part: walks the grammar).
  virtual void fill_mask() = 0;
  /// Sets logits of the tokens the filled mask does not allow to -infinity; false when it allows
  /// none (a dead end: the request must end with an error, never with output outside the grammar).
  virtual bool apply_mask(std::span<float> logits) = 0;
  /// Both: fill, then apply.
  bool mask_logits(std::span<float> logits) {
    fill_mask();
    return apply_mask(logits);
  }
  /// Advances past a sampled token (one a mask allowed); false if the grammar refuses it.
  virtual bool accept(int32_t token) = 0;
  /// Whether the grammar allows any first token: false for a schema whose language is empty (an
  /// `enum` of nothing, a minimum above the maximum), which the caller refuses before it runs.
  virtual bool allows_any() = 0;
};

/// Fills the masks of a step's constrained requests on a thread of its own while the engine thread
/// runs the forward pass, so grammar work is off the critical path unless it takes longer than the
/// forward pass (a few microseconds per request per step against milliseconds).
class MaskWorker {
 public:
  MaskWorker();
  ~MaskWorker();
  MaskWorker(const MaskWorker&) = delete;
  MaskWorker& operator=(const MaskWorker&) = delete;

  /// Starts filling the masks of `constraints` (kept alive by the caller until wait() returns).
  void start(std::span<TokenConstraint* const> constraints);
  /// Returns once every mask of the last start() is filled: the seconds filling them took.
  double wait();

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<TokenConstraint*> work_;
  bool is_busy_ = false;
  bool is_stopping_ = false;
  double fill_seconds_ = 0;
  std::thread thread_;
};

class GrammarCompiler {
 public:
  /// For a model's tokenizer; `end_tokens` may end a generation where the grammar is complete.
  GrammarCompiler(const tok::Tokenizer& tokenizer, std::span<const int32_t> end_tokens);
  ~GrammarCompiler();
  GrammarCompiler(const GrammarCompiler&) = delete;
  GrammarCompiler& operator=(const GrammarCompiler&) = delete;

  /// A constraint to JSON valid against `schema` (JSON Schema text). The error names what the schema
  /// asks that cannot be compiled (an unsupported keyword, an invalid schema). Thread-safe.
  Result<std::shared_ptr<TokenConstraint>> json_schema(const std::string& schema);

  /// A constraint to an xgrammar structural tag (its JSON form): text and tagged regions such as
  /// tool calls, each region's content held to its own JSON Schema (tool_calls/grammar_spec.h).
  /// Cached like schemas. Thread-safe.
  Result<std::shared_ptr<TokenConstraint>> structural_tag(const std::string& spec);

 private:
  Result<std::shared_ptr<TokenConstraint>> compile(const std::function<xgrammar::CompiledGrammar(xgrammar::GrammarCompiler&)>& how);

  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::mutex mutex_;  // compilations (the compiler's cache is shared by every request of the model)
};

}  // namespace tern::engine
