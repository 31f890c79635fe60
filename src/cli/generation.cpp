#include "cli/generation.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>

#include "cli/commands.h"
#include "engine/engine_stack.h"
#include "kernels/cpu/cpu_features.h"

namespace tern::cli {

void add_generation_options(CLI::App& command, GenerationOptions& o) {
  command.add_option("-m,--model", o.model, "Model alias or .gguf path")->capture_default_str();
  command.add_option("-n,--max-tokens", o.max_tokens, "Most tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  command.add_option("-t,--threads", o.threads, "Threads (0: one per core)")->capture_default_str()->check(CLI::Range(0, 1024));
  command.add_option("-c,--context", o.context, "Context length to allocate (tokens)")->capture_default_str()->check(CLI::Range(16, 1 << 20));
  command.add_option("--temperature", o.sampling.temperature, "0 for greedy")->capture_default_str();
  command.add_option("--top-k", o.sampling.top_k, "0: off")->capture_default_str();
  command.add_option("--top-p", o.sampling.top_p, "1: off")->capture_default_str();
  command.add_option("--min-p", o.sampling.min_p, "0: off")->capture_default_str();
  command.add_option("--repetition-penalty", o.sampling.repetition_penalty)->capture_default_str();
  command.add_option("--presence-penalty", o.sampling.presence_penalty)->capture_default_str();
  command.add_option("--frequency-penalty", o.sampling.frequency_penalty)->capture_default_str();
  command.add_option("--lora", o.lora, "Apply a LoRA adapter: a GGUF LoRA file or a PEFT directory (docs/lora.md)");
  command.add_option("--lora-scale", o.lora_scale, "Scale of the adapter's update, on top of alpha / rank")->capture_default_str();
  command.add_option("--seed", o.sampling.seed, "Random seed (default: random)")->each([&o](const std::string&) { o.seed_given = true; });
  command.add_flag("--special", o.parse_special, "Recognise special-token text in the prompt");
  add_speculation_options(command, o.speculation, /*is_server=*/false);
}

void add_speculation_options(CLI::App& command, SpeculationFlags& flags, bool is_server) {
  command.add_option("--speculate", flags.method,
                     "Speculative decoding: off, ngram (prompt lookup: guess that the last tokens continue as where they occurred "
                     "before), or draft (a smaller model with the same vocabulary guesses: --draft-model); verified exactly, taken "
                     "only where the step-time model says it pays")
      ->capture_default_str();
  command.add_option("--draft-model", flags.draft_model,
                     "Speculative decoding's draft model: a .gguf file or a model name, with the target's vocabulary (implies --speculate draft)");
  command.add_option("--speculate-draft", flags.max_draft, "Most guessed tokens verified per step")->capture_default_str();
  command.add_option("--speculate-draft-min", flags.min_draft,
                     "Guesses verified whenever there are any, whatever the step-time model says (0: it decides each)")
      ->capture_default_str();
  command.add_option("--speculate-ngram-min", flags.ngram_min, "Shortest suffix prompt lookup matches")->capture_default_str();
  command.add_option("--speculate-ngram-max", flags.ngram_max, "Longest suffix prompt lookup matches (tried first)")->capture_default_str();
  if (is_server) {
    command.add_flag("--speculate-opt-in", flags.opt_in,
                     "Speculate only for requests that ask (\"speculative\": true); otherwise for all but those that opt out");
  }
}

Result<engine::SpeculationConfig> speculation_config(const SpeculationFlags& flags) {
  engine::SpeculationConfig config;
  auto method = engine::parse_speculation_method(flags.method);
  if (!method) return fail("--speculate: {}", method.error().message);
  config.method = *method;
  if (!flags.draft_model.empty()) {
    if (flags.method != "off" && config.method != engine::SpeculationMethod::kDraft) {
      return fail("--draft-model goes with --speculate draft, not {}", flags.method);
    }
    config.method = engine::SpeculationMethod::kDraft;
    config.draft_model = flags.draft_model;
  } else if (config.method == engine::SpeculationMethod::kDraft) {
    return fail("--speculate draft needs --draft-model");
  }
  config.max_draft = flags.max_draft;
  config.min_draft = flags.min_draft;
  config.ngram_min = flags.ngram_min;
  config.ngram_max = flags.ngram_max;
  config.is_default_on = !flags.opt_in;
  if (auto ok = config.validate(); !ok) return fail("--speculate: {}", ok.error().message);
  return config;
}

void print_stats(const GenerationStats& s) {
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.1f tokens/s); %s\n",
               static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
               s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0.0, static_cast<long long>(s.generated_tokens),
               s.decode_seconds, s.decode_seconds > 0 ? (s.generated_tokens - 1) / s.decode_seconds : 0.0,
               s.finish_reason.c_str());
  if (s.draft_tokens > 0) {
    std::fprintf(stderr, "speculation: %lld guesses verified, %lld accepted (%.0f %%)\n", static_cast<long long>(s.draft_tokens),
                 static_cast<long long>(s.accepted_tokens), 100.0 * static_cast<double>(s.accepted_tokens) / static_cast<double>(s.draft_tokens));
  }
}

Result<std::unique_ptr<GenerationSession>> GenerationSession::create(const GenerationOptions& options) {
  if (auto ok = options.sampling.validate(); !ok) return std::unexpected(ok.error());
  auto speculation = speculation_config(options.speculation);
  if (!speculation) return std::unexpected(speculation.error());
  auto path = models::resolve_model(options.model, stderr_progress());
  if (!path) return std::unexpected(path.error());
  if (!speculation->draft_model.empty()) {
    auto draft = models::resolve_model(speculation->draft_model, stderr_progress());
    if (!draft) return fail("--draft-model: {}", draft.error().message);
    speculation->draft_model = *draft;
  }
  auto session = std::make_unique<GenerationSession>();
  session->options_ = options;
  if (!options.seed_given) session->options_.sampling.seed = std::random_device{}();
  engine::EngineStackOptions stack;
  stack.path = *path;
  stack.threads = options.threads;
  // One user: the KV cache holds exactly one full context (the engine's sizing policy).
  stack.kv.context = options.context;
  stack.check_model = [&](const model::Model& model) -> Result<void> {
    if (options.lora.empty()) return {};
    auto adapter = model::load_lora(options.lora, model.config(), {.scale = options.lora_scale, .max_rank = 0});
    if (!adapter) return std::unexpected(adapter.error());
    session->adapter_ = std::move(*adapter);
    std::fprintf(stderr, "LoRA adapter %s: rank %lld, scale %.3g, %.1f MiB\n", options.lora.c_str(),
                 static_cast<long long>(session->adapter_->max_rank), session->adapter_->scale, session->adapter_->bytes / 1048576.0);
    return {};
  };
  stack.engine.model_name = *path;
  stack.engine.max_waiting = 1;
  stack.engine.scheduler.max_running = 1;
  stack.engine.speculation = *speculation;
  auto built = engine::build_engine_stack(std::move(stack));
  if (!built) return std::unexpected(built.error());
  session->stack_ = std::move(*built);
  std::fprintf(stderr, "%s: %s, %d threads, %s kernels, context %lld%s\n", session->model().file().name().c_str(),
               session->model().config().arch_name.c_str(), session->stack_->backend->num_threads(),
               kernels::isa_name(kernels::best_isa()), static_cast<long long>(session->stack_->kv.max_model_len),
               speculation->method == engine::SpeculationMethod::kOff ? "" : (", speculation " + engine::describe_speculation(*speculation)).c_str());
  return session;
}

GenerationSession::~GenerationSession() {
  if (stack_) stack_->engine->stop();
}

Result<GenerationStats> GenerationSession::generate(std::span<const int32_t> tokens,
                                                    const std::function<void(std::string_view)>& emit,
                                                    const std::atomic<bool>* stop) {
  using Clock = std::chrono::steady_clock;
  if (tokens.empty()) return fail("the prompt has no tokens");
  const int64_t context = engine().config().max_model_len;
  if (static_cast<int64_t>(tokens.size()) >= context) {
    return fail("the prompt is {} tokens; the context holds {} (use --context)", tokens.size(), context);
  }
  engine::GenerationRequest request;
  request.prompt.assign(tokens.begin(), tokens.end());
  request.adapter = adapter_;
  request.sampling = options_.sampling;
  request.sampling.seed += num_turns_++;  // same seed, same conversation; turns draw differently
  // Generation stops at the end of the context, as a "length" finish.
  request.max_tokens = std::min<int64_t>(options_.max_tokens, context - static_cast<int64_t>(tokens.size()));
  request.report_every_token = true;  // first-token and decode timing, even for tokens with no text yet

  // The engine calls the sink on its thread; this thread waits, writes text, and watches `stop`.
  struct Channel {
    std::mutex mutex;
    std::condition_variable ready;
    std::vector<engine::GenerationEvent> events;
  };
  auto channel = std::make_shared<Channel>();
  const auto submitted = Clock::now();
  auto id = engine().submit(std::move(request), [channel](engine::GenerationEvent&& event) {
    std::lock_guard lock(channel->mutex);
    channel->events.push_back(std::move(event));
    channel->ready.notify_one();
  });
  if (!id) return fail("{}", id.error().message);

  GenerationStats stats;
  Clock::time_point first_token{}, last_token{};
  bool is_cancelled = false;
  std::vector<engine::GenerationEvent> batch;
  for (bool is_finished = false; !is_finished;) {
    {
      std::unique_lock lock(channel->mutex);
      channel->ready.wait_for(lock, std::chrono::milliseconds(20), [&] { return !channel->events.empty(); });
      batch.swap(channel->events);
    }
    if (stop != nullptr && stop->load() && !is_cancelled) {
      engine().cancel(*id);
      is_cancelled = true;
    }
    for (engine::GenerationEvent& event : batch) {
      if (event.num_tokens > 0) {
        last_token = Clock::now();
        if (first_token == Clock::time_point{}) first_token = last_token;
      }
      if (!event.text.empty()) emit(event.text);
      if (!event.finished) continue;
      if (!event.error.empty()) return fail("{}", event.error);
      is_finished = true;
      stats.prompt_tokens = event.usage.prompt_tokens - event.usage.cached_tokens;
      stats.generated_tokens = event.usage.completion_tokens;
      stats.draft_tokens = event.num_draft_tokens;
      stats.accepted_tokens = event.num_accepted_tokens;
      stats.finish_reason = is_cancelled && event.finish_reason == "abort" ? "interrupted" : event.finish_reason;
    }
    batch.clear();
  }
  if (first_token != Clock::time_point{}) {
    stats.prefill_seconds = std::chrono::duration<double>(first_token - submitted).count();
    stats.decode_seconds = std::chrono::duration<double>(last_token - first_token).count();
  }
  return stats;
}

}  // namespace tern::cli
