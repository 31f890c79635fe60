#pragma once
// What `tern run` and `tern chat` share: options, loading, generation through the engine (the same
// scheduler, KV manager and sampler as `tern serve`: one generation path), speed figures.

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/engine.h"
#include "engine/engine_stack.h"
#include "engine/sampling/sampler.h"
#include "model/catalog.h"
#include "model/model.h"

namespace tern::cli {

/// Speculative decoding's flags, as tern run, chat and serve take them (engine/spec/proposer.h).
struct SpeculationFlags {
  std::string method = "off";
  int32_t max_draft = 8;
  int32_t min_draft = 0;
  int32_t ngram_min = 2;
  int32_t ngram_max = 4;
  std::string draft_model;  ///< a file or a model name (tern pull); implies --speculate draft
  bool opt_in = false;  ///< serve: only requests that ask ("speculative": true) get it
};
void add_speculation_options(CLI::App& command, SpeculationFlags& flags, bool is_server);
/// The engine's configuration from the flags; the error names the flag.
Result<engine::SpeculationConfig> speculation_config(const SpeculationFlags& flags);

struct GenerationOptions {
  std::string model{models::kDefaultModel};
  int max_tokens = 256;
  int threads = 0;
  int context = 4096;
  bool parse_special = false;
  std::string lora;         ///< a LoRA adapter (GGUF LoRA file or PEFT directory) on every token; empty: none
  float lora_scale = 1.0f;
  engine::SamplingParams sampling{.temperature = 0.8f, .top_p = 0.95f, .min_p = 0.05f};
  bool seed_given = false;
  SpeculationFlags speculation;
};

void add_generation_options(CLI::App& command, GenerationOptions& options);

struct GenerationStats {
  int64_t prompt_tokens = 0;     ///< tokens computed for the prompt (cached ones excluded)
  double prefill_seconds = 0;
  int64_t generated_tokens = 0;
  double decode_seconds = 0;     ///< from the first generated token to the last
  std::string finish_reason;     ///< "stop", "length" or "interrupted"
  int64_t draft_tokens = 0;      ///< speculative decoding: guesses verified
  int64_t accepted_tokens = 0;   ///< of those, accepted
};

void print_stats(const GenerationStats& stats);

/// One model and its engine, for one user at a time. A chat's turns reuse the KV of the conversation
/// so far through the engine's prefix cache (full blocks of 16 tokens).
class GenerationSession {
 public:
  static Result<std::unique_ptr<GenerationSession>> create(const GenerationOptions& options);
  ~GenerationSession();

  /// Generates after `tokens` (the whole sequence so far) until an end token, max_tokens, the end of
  /// the context, or `*stop` becoming true; text goes to `emit` as it completes.
  Result<GenerationStats> generate(std::span<const int32_t> tokens, const std::function<void(std::string_view)>& emit,
                                   const std::atomic<bool>* stop = nullptr);

  model::Model& model() { return *stack_->model; }

 private:
  engine::Engine& engine() { return *stack_->engine; }

  GenerationOptions options_;
  std::shared_ptr<const model::LoraAdapter> adapter_;  // declared first: outlives the engine's requests
  std::unique_ptr<engine::EngineStack> stack_;
  uint64_t num_turns_ = 0;
};

}  // namespace tern::cli
