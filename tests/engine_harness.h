#pragma once
// A model behind a real Engine, for tests that need the serving path's numbers: the raw logits of every
// sampled row (through the engine's logits observer) and the sampled token ids, per request.

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "engine/engine.h"
#include "model/model.h"

namespace tern::testing {

struct EngineOutput {
  std::vector<std::vector<float>> logit_rows;  ///< one per sampled token, in order (row 0: after the prompt)
  std::vector<int32_t> tokens;                 ///< sampled token ids
  std::string finish_reason;
  std::string stop_sequence;
  std::string error;
  std::string text;                              ///< the events' text, concatenated
  std::vector<engine::TokenLogprob> logprobs;    ///< with top_logprobs >= 0
  engine::Usage usage;
  int64_t num_draft_tokens = 0, num_accepted_tokens = 0;  ///< speculative decoding's guesses, verified and accepted
  std::vector<engine::EngineTraceEvent> trace;  ///< a traced request's timeline
};

class EngineHarness {
 public:
  /// `keep_logits`: record every sampled row (memory: rows x vocab floats per request).
  EngineHarness(model::Model& model, int64_t num_kv_blocks, bool keep_logits, bool prefix_caching = false,
                int64_t max_batch_tokens = 512, engine::SpeculationConfig speculation = {},
                std::shared_ptr<engine::DraftModel> draft_model = nullptr) {
    engine::EngineConfig config;
    config.model_name = "test";
    config.num_kv_blocks = num_kv_blocks;
    config.max_model_len = num_kv_blocks * config.block_size;
    config.prefix_caching = prefix_caching;
    config.scheduler.max_batch_tokens = max_batch_tokens;
    config.speculation = speculation;
    config.draft_model = std::move(draft_model);
    if (keep_logits) {
      config.logits_observer = [this](uint64_t id, std::span<const float> logits) {
        std::lock_guard lock(mutex_);
        outputs_[id].logit_rows.emplace_back(logits.begin(), logits.end());
      };
    }
    engine_ = std::make_unique<engine::Engine>(model, std::move(config));
    engine_->start();
  }
  ~EngineHarness() { engine_->stop(); }

  /// Waits for a request to finish and hands over what it produced.
  EngineOutput wait(uint64_t id) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return finished_.contains(id); });
    EngineOutput out = std::move(outputs_[id]);
    outputs_.erase(id);
    return out;
  }

  /// Waits until the request has sampled at least `n` tokens (or finished).
  void wait_for_tokens(uint64_t id, size_t n) {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return outputs_[id].tokens.size() >= n || finished_.contains(id); });
  }

  EngineOutput run(const std::vector<int32_t>& prompt, int64_t max_tokens,
                   std::shared_ptr<const model::LoraAdapter> adapter = nullptr) {
    return wait(submit(prompt, max_tokens, std::move(adapter)));
  }

  /// A greedy request (temperature 0, EOS ignored), with a LoRA adapter if given; its id.
  uint64_t submit(const std::vector<int32_t>& prompt, int64_t max_tokens, std::shared_ptr<const model::LoraAdapter> adapter = nullptr) {
    engine::GenerationRequest request;
    request.adapter = std::move(adapter);
    request.prompt = prompt;
    request.sampling.temperature = 0;
    request.max_tokens = max_tokens;
    request.ignore_eos = true;
    request.top_logprobs = 0;
    return submit(std::move(request));
  }

  /// Any request; its id. (Token ids are recorded from logprobs: ask for top_logprobs >= 0.)
  uint64_t submit(engine::GenerationRequest request) {
    // The id is assigned inside submit(), after which the engine thread may call the sink at once:
    // the sink finds its request through a slot filled under the lock before the sink can take it.
    auto slot = std::make_shared<uint64_t>(0);
    std::unique_lock lock(mutex_);
    auto id = engine_->submit(std::move(request), [this, slot](engine::GenerationEvent&& event) {
      std::lock_guard inner(mutex_);
      EngineOutput& output = outputs_[*slot];
      for (const engine::TokenLogprob& logprob : event.logprobs) output.tokens.push_back(logprob.token);
      output.logprobs.insert(output.logprobs.end(), event.logprobs.begin(), event.logprobs.end());
      output.text += event.text;
      if (event.finished) {
        output.finish_reason = event.finish_reason;
        output.stop_sequence = event.stop_sequence;
        output.num_draft_tokens = event.num_draft_tokens;
        output.num_accepted_tokens = event.num_accepted_tokens;
        output.error = event.error;
        output.usage = event.usage;
        output.trace = std::move(event.trace);
        finished_.insert(*slot);
      }
      done_.notify_all();
    });
    EXPECT_TRUE(id.has_value()) << (id ? "" : id.error().message);
    *slot = id ? *id : 0;
    return *slot;
  }

 private:
  std::unique_ptr<engine::Engine> engine_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::map<uint64_t, EngineOutput> outputs_;
  std::set<uint64_t> finished_;
};

}  // namespace tern::testing
