#include "cli/generation.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <random>

#include "cli/commands.h"
#include "kernels/cpu/cpu_features.h"
#include "tokenizer/detokenizer.h"

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
  command.add_option("--seed", o.sampling.seed, "Random seed (default: random)")->each([&o](const std::string&) { o.seed_given = true; });
  command.add_flag("--special", o.parse_special, "Recognise special-token text in the prompt");
}

Result<std::string> chat_template_source(const model::Model& model, const std::string& template_file) {
  if (!template_file.empty()) {
    std::ifstream in(template_file);
    if (!in) return fail("cannot read chat template {}", template_file);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  auto source = model.file().get_string("tokenizer.chat_template");
  if (!source) {
    return fail("{} has no chat template (it may be a base model); give one with --template FILE", model.file().name());
  }
  return std::string(*source);
}

void print_stats(const GenerationStats& s) {
  std::fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tokens/s); decode: %lld tokens in %.3f s (%.1f tokens/s); %s\n",
               static_cast<long long>(s.prompt_tokens), s.prefill_seconds,
               s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0.0, static_cast<long long>(s.generated_tokens),
               s.decode_seconds, s.decode_seconds > 0 ? (s.generated_tokens - 1) / s.decode_seconds : 0.0,
               s.finish_reason.c_str());
}

Result<std::unique_ptr<GenerationSession>> GenerationSession::create(const GenerationOptions& options) {
  if (auto ok = options.sampling.validate(); !ok) return std::unexpected(ok.error());
  auto path = models::resolve_model(options.model, stderr_progress());
  if (!path) return std::unexpected(path.error());
  auto model = model::Model::load(*path);
  if (!model) return std::unexpected(model.error());
  auto session = std::make_unique<GenerationSession>();
  session->options_ = options;
  if (!options.seed_given) session->options_.sampling.seed = std::random_device{}();
  session->model_ = std::move(*model);
  session->pool_ = std::make_unique<kernels::ThreadPool>(options.threads);
  const int64_t context = std::min<int64_t>(options.context, session->model_->config().context_length);
  session->runner_ = std::make_unique<engine::SequenceRunner>(*session->model_, *session->pool_, context);
  session->sampler_ = engine::Sampler(session->options_.sampling);
  std::fprintf(stderr, "%s: %s, %d threads, %s kernels, context %lld\n", session->model_->file().name().c_str(),
               session->model_->config().arch_name.c_str(), session->pool_->num_threads(),
               kernels::isa_name(kernels::best_isa()), static_cast<long long>(context));
  return session;
}

Result<GenerationStats> GenerationSession::generate(std::span<const int32_t> tokens,
                                                    const std::function<void(std::string_view)>& emit,
                                                    const std::atomic<bool>* stop) {
  using Clock = std::chrono::steady_clock;
  GenerationStats stats;
  if (tokens.empty()) return fail("the prompt has no tokens");
  // Reuse the cached prefix: only tokens past the common prefix are computed.
  const auto& cached = runner_->tokens();
  size_t common = 0;
  while (common < cached.size() && common < tokens.size() - 1 && cached[common] == tokens[common]) ++common;
  runner_->truncate(static_cast<int64_t>(common));
  if (static_cast<int64_t>(tokens.size()) >= runner_->max_tokens()) {
    return fail("the prompt is {} tokens; the context holds {} (use --context)", tokens.size(), runner_->max_tokens());
  }
  std::vector<int32_t> history(tokens.begin(), tokens.end());
  const auto prefill_start = Clock::now();
  auto logits = runner_->feed(tokens.subspan(common));
  if (!logits) return std::unexpected(logits.error());
  stats.prompt_tokens = static_cast<int64_t>(tokens.size() - common);
  stats.prefill_seconds = std::chrono::duration<double>(Clock::now() - prefill_start).count();

  tok::IncrementalDetokenizer detokenizer(model_->tokenizer());
  const auto& end_tokens = model_->end_of_generation_tokens();
  std::vector<float> row(logits->begin(), logits->end());
  Clock::time_point first_token_time;
  stats.finish_reason = "length";
  for (int i = 0; i < options_.max_tokens; ++i) {
    const int32_t token = sampler_.sample(row, history);
    if (i == 0) first_token_time = Clock::now();
    ++stats.generated_tokens;
    if (std::find(end_tokens.begin(), end_tokens.end(), token) != end_tokens.end()) {
      stats.finish_reason = "stop";
      break;
    }
    emit(detokenizer.push(token));
    history.push_back(token);
    if (stop != nullptr && stop->load()) {
      stats.finish_reason = "interrupted";
      break;
    }
    if (i + 1 == options_.max_tokens) break;
    if (static_cast<int64_t>(runner_->tokens().size()) + 1 >= runner_->max_tokens()) {
      stats.finish_reason = "length";
      break;
    }
    const int32_t next[] = {token};
    auto step = runner_->feed(next);
    if (!step) return std::unexpected(step.error());
    row.assign(step->begin(), step->end());
  }
  emit(detokenizer.flush());
  stats.decode_seconds = std::chrono::duration<double>(Clock::now() - first_token_time).count();
  return stats;
}

}  // namespace tern::cli
