#pragma once
// One model served by one engine, assembled in one place for every command that generates (tern
// serve's local models, tern run and tern chat), and for any second stack one of them needs (a draft
// model for speculative decoding is one more stack, built the same way):
//
//   backend (threads) -> model (the GGUF file) -> [draft model, on the same backend] -> KV sizing
//     (context, blocks) -> [memory reservation] -> [KV disk tier] -> engine (started)
//
// A draft model (EngineConfig::speculation with SpeculationMethod::kDraft) is loaded onto the target's
// backend, checked against the target's vocabulary, and given a KV cache of as many positions as the
// target's; the engine runs it on its own thread between steps.
//
// The caller keeps what is its own: resolving a model alias, chat templates, LoRA adapters, HTTP.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "engine/engine.h"
#include "engine/kv/kv_sizing.h"
#include "model/model.h"
#include "util/result.h"

namespace tern::engine {

struct EngineStackOptions {
  std::string path;   ///< the .gguf file
  int threads = 0;    ///< 0: one per core
  KvSizingRequest kv;
  /// The engine's settings; num_kv_blocks and max_model_len come from the KV sizing, and
  /// org_pin_quota_blocks from `kv_pin_quota_bytes`.
  EngineConfig engine;
  int64_t kv_pin_quota_bytes = 0;  ///< KV cache each pin owner may pin; 0: no limit below the pool's fraction
  std::string kv_disk_cache;       ///< directory of the KV cache's disk tier (with prefix caching); empty: none
  int64_t kv_disk_bytes = int64_t{20} << 30;
  /// Optional, called with the loaded model before anything is sized (a chat template to check, say);
  /// an error stops the build.
  std::function<Result<void>(const model::Model&)> check_model;
  /// Optional, called with the bytes the stack keeps in memory (the file's weights and the KV cache)
  /// before the KV cache is made; an error stops the build.
  std::function<Result<void>(int64_t resident_bytes)> reserve;
};

struct EngineStack {
  // Declared so that the engine stops first, then the model goes, then the backend it ran on.
  std::unique_ptr<backend::Backend> backend;
  std::unique_ptr<model::Model> model;
  std::unique_ptr<model::Model> draft_model;  ///< speculative decoding's draft model, if configured
  std::unique_ptr<Engine> engine;
  KvSizing kv;
  int64_t resident_bytes = 0;  ///< the files' weights and the KV caches (the draft model's included)
};

/// Builds and starts the stack; the error names the step that failed.
Result<std::unique_ptr<EngineStack>> build_engine_stack(EngineStackOptions options);

}  // namespace tern::engine
