#include "router/local_provider.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "observe/trace.h"
#include "router/prompt_encoder.h"
#include "tool_calls/grammar_spec.h"
#include "tool_calls/parser.h"

namespace tern::router {
namespace {

using wire::ApiError;
using wire::bad_request;
using wire::RequestKind;

class LocalCall final : public Call {
 public:
  LocalCall(engine::Engine& engine, uint64_t id) : engine_(engine), id_(id) {}
  void cancel() override { engine_.cancel(id_); }

 private:
  engine::Engine& engine_;
  uint64_t id_;
};

/// Tokens two prompts share at their start.
int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const auto mismatch = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  return static_cast<int64_t>(mismatch.first - a.begin());
}

}  // namespace

std::vector<engine::PinBreakpoint> LocalProvider::pin_breakpoints(const wire::Request& request, const std::vector<int32_t>& prompt) const {
  std::vector<engine::PinBreakpoint> out;
  const int64_t prompt_len = static_cast<int64_t>(prompt.size());
  const auto is_end_of_conversation = [&](const wire::CacheBreakpoint& b) {
    if (b.message + 1 != static_cast<int>(request.messages.size())) return false;
    const auto& content = request.messages.back()["content"];
    return !content.is_string() || b.chars >= content.get_ref<const std::string&>().size();
  };
  for (const wire::CacheBreakpoint& b : request.cache_breakpoints) {
    int64_t tokens = prompt_len;
    // A breakpoint after the last message (Anthropic's top-level form, or a mark on the last block) cuts
    // nothing: the cut conversation would render to the prompt itself.
    if (b.message >= 0 && request.kind == RequestKind::kChat && chat_template_ && !is_end_of_conversation(b)) {
      // The conversation cut at the breakpoint, rendered and tokenized: the tokens it shares with the
      // whole prompt are the ones before the breakpoint (a merge across the cut only shortens it).
      nlohmann::ordered_json cut = nlohmann::ordered_json::array();
      for (int i = 0; i <= b.message && i < static_cast<int>(request.messages.size()); ++i) cut.push_back(request.messages[static_cast<size_t>(i)]);
      if (cut.empty()) continue;
      auto& content = cut.back()["content"];
      if (content.is_string()) content = content.get<std::string>().substr(0, b.chars);
      auto ids = encode_conversation(request, cut);
      if (!ids) continue;  // a template that refuses the cut conversation: no retention, never an error
      tokens = common_prefix(*ids, prompt);
    }
    out.push_back({.num_tokens = tokens, .ttl = std::chrono::seconds(b.ttl_s)});
  }
  return out;
}

Result<std::vector<int32_t>> LocalProvider::encode_conversation(const wire::Request& request, const nlohmann::ordered_json& messages) const {
  return router::encode_conversation(*chat_template_, model_.tokenizer(), tool_format_, request, messages);
}

engine::GrammarCompiler& LocalProvider::grammars() const {
  std::call_once(grammars_once_, [this] {
    std::vector<int32_t> end_tokens(model_.end_of_generation_tokens().begin(), model_.end_of_generation_tokens().end());
    grammars_ = std::make_unique<engine::GrammarCompiler>(model_.tokenizer(), end_tokens);
  });
  return *grammars_;
}

std::expected<std::shared_ptr<engine::TokenConstraint>, ApiError> LocalProvider::schema_constraint(const nlohmann::ordered_json& schema,
                                                                                                  const std::string& param,
                                                                                                  const std::string& subject) const {
  if (auto keepable = engine::check_schema_keepable(schema); !keepable) {
    return std::unexpected(bad_request(fmt::format("{}: {}", param, keepable.error().message), param));
  }
  auto constraint = grammars().json_schema(schema.is_object() ? schema.dump() : std::string(R"({"type": "object"})"));
  if (!constraint) {
    return std::unexpected(bad_request(fmt::format("{}: {} cannot be used: {}", param, subject, constraint.error().message), param));
  }
  if (!(*constraint)->allows_any()) {
    return std::unexpected(bad_request(fmt::format("{}: no JSON value satisfies {} (its language is empty)", param, subject), param));
  }
  return std::move(*constraint);
}

std::expected<std::shared_ptr<engine::TokenConstraint>, ApiError> LocalProvider::output_constraint(const wire::Request& request) const {
  // json_object (and a json_schema without a schema): any JSON object.
  const nlohmann::ordered_json& schema = request.response_format.schema;
  return schema_constraint(schema, schema.is_object() ? "response_format.json_schema.schema" : "response_format", "the schema");
}

std::expected<std::shared_ptr<engine::TokenConstraint>, ApiError> LocalProvider::tool_constraint(const wire::Request& request) const {
  // Each tool's parameters alone first (compilations are cached), so a refusal names the tool.
  for (size_t i = 0; i < request.tools.size(); ++i) {
    auto alone = schema_constraint(request.tools[i].parameters, fmt::format("tools[{}].parameters", i),
                                   fmt::format("the schema of tool '{}'", request.tools[i].name));
    if (!alone) return std::unexpected(alone.error());
  }
  auto constraint = grammars().structural_tag(tool_calls::structural_tag(tool_format_, request.tools, request.tool_choice));
  if (!constraint) {
    return std::unexpected(bad_request(fmt::format("tools: the tool-call grammar cannot be built: {}", constraint.error().message), "tools"));
  }
  return std::move(*constraint);
}

LocalProvider::LocalProvider(std::string name, model::Model& model, engine::Engine& engine,
                             std::optional<chat::ChatTemplate> chat_template, tool_calls::Format tool_format,
                             engine::AdapterRegistry* adapters)
    : name_(std::move(name)), model_(model), engine_(engine), chat_template_(std::move(chat_template)),
      tool_format_(std::move(tool_format)), adapters_(adapters) {}

const std::string& LocalProvider::file_name() const { return model_.file().name(); }

std::expected<engine::GenerationRequest, ApiError> LocalProvider::prepare(const wire::Request& request) const {
  engine::GenerationRequest out;
  const bool is_chat = request.kind == RequestKind::kChat;
  if (request.wants_tools()) {
    // Calls are read back out of the text in the model's syntax, which the grammar guarantees.
    if (!is_chat) return std::unexpected(bad_request("tools need a chat request", "tools"));
    if (request.wants_json()) {
      return std::unexpected(bad_request("response_format cannot be combined with tools on a local model (set tool_choice \"none\" "
                                         "for a JSON reply, or drop response_format)", "response_format"));
    }
    if (request.ignore_eos) return std::unexpected(bad_request("ignore_eos cannot be combined with tools", "ignore_eos"));
    auto constraint = tool_constraint(request);
    if (!constraint) return std::unexpected(constraint.error());
    out.constraint = std::move(*constraint);
  } else if (request.wants_json()) {
    // Past the end of the JSON the grammar allows nothing but an end token: ignoring it has no way on.
    if (request.ignore_eos) return std::unexpected(bad_request("ignore_eos cannot be combined with response_format", "ignore_eos"));
    auto constraint = output_constraint(request);
    if (!constraint) return std::unexpected(constraint.error());
    out.constraint = std::move(*constraint);
  }
  if (is_chat) {
    if (!chat_template_) {
      return std::unexpected(bad_request(fmt::format("model '{}' has no chat template (a base model?): use /v1/completions, "
                                                     "or start the server with --chat-template FILE", name_)));
    }
    auto ids = encode_conversation(request, request.messages);
    if (!ids) return std::unexpected(bad_request(fmt::format("the chat template failed on these messages: {}", ids.error().message), "messages"));
    out.prompt = std::move(*ids);
  } else if (request.prompt) {
    out.prompt = model_.tokenizer().encode(*request.prompt, {.add_special = true, .parse_special = false});
  } else {
    const int64_t vocab = model_.config().vocab_size;
    for (int32_t t : request.prompt_tokens) {
      if (t >= vocab) return std::unexpected(bad_request(fmt::format("prompt token id {} is outside the vocabulary of {}", t, vocab), "prompt"));
    }
    out.prompt = request.prompt_tokens;
  }
  if (out.prompt.empty()) return std::unexpected(bad_request("the prompt is empty", is_chat ? "messages" : "prompt"));
  const int64_t prompt_len = static_cast<int64_t>(out.prompt.size());
  const int64_t room = max_model_len() - prompt_len;
  if (room < 1 || (request.max_tokens && *request.max_tokens > room)) {
    return std::unexpected(bad_request(
        fmt::format("this model's maximum context length is {} tokens; the prompt has {} and {} were requested to generate",
                    max_model_len(), prompt_len, request.max_tokens ? fmt::to_string(*request.max_tokens) : std::string("at least 1")),
        request.max_tokens ? "max_tokens" : (is_chat ? "messages" : "prompt")));
  }
  // Defaults as OpenAI's: completions 16 tokens, chat up to the context.
  out.max_tokens = request.max_tokens.value_or(is_chat ? room : std::min<int64_t>(16, room));
  const wire::Sampling& s = request.sampling;
  out.sampling = {.temperature = s.temperature, .top_k = s.top_k, .top_p = s.top_p, .min_p = s.min_p,
                  .repetition_penalty = s.repetition_penalty, .presence_penalty = s.presence_penalty,
                  .frequency_penalty = s.frequency_penalty, .seed = s.seed};
  if (!request.seed_given) out.sampling.seed = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
  out.stop = request.stop;
  out.ignore_eos = request.ignore_eos;
  out.speculate = request.speculative;
  out.top_logprobs = request.top_logprobs;
  out.cache_salt = request.cache_salt;
  out.cache_breakpoints = pin_breakpoints(request, out.prompt);
  out.pin_owner = request.pin_owner;
  if (!request.adapter.empty()) {
    if (adapters_ == nullptr) return std::unexpected(bad_request(fmt::format("model '{}' serves no LoRA adapters", name_), "model"));
    auto adapter = adapters_->acquire(request.adapter, model_.config());
    if (!adapter) {
      // Unloaded meanwhile: as if it never existed. A file that fails to load is the server's problem.
      if (!adapters_->contains(request.adapter)) {
        return std::unexpected(ApiError{.status = 404, .message = adapter.error().message, .type = "invalid_request_error",
                                        .param = "model", .code = "model_not_found", .is_retryable = false, .retry_after = {}});
      }
      return std::unexpected(wire::server_error(500, adapter.error().message, "adapter_load_failed"));
    }
    out.adapter = std::move(*adapter);
    out.adapter_name = request.adapter;
  }
  return out;
}

namespace {

/// The engine's record of a traced request, as its timeline's events (once, when it finishes).
void add_engine_trace(observe::Trace& trace, engine::Clock::time_point arrival, const engine::GenerationEvent& finished) {
  using Kind = engine::EngineTraceEvent::Kind;
  auto ms = [](double seconds) { return seconds * 1000.0; };
  trace.add("queued", {}, arrival, finished.queued_seconds >= 0 ? ms(finished.queued_seconds) : trace.ms_since_start(engine::Clock::now()) - trace.ms_since_start(arrival));
  engine::Clock::time_point first_token{};
  for (const engine::EngineTraceEvent& e : finished.trace) {
    switch (e.kind) {
      case Kind::kScheduled:
        trace.add("cache_lookup", {{"step", e.step}, {"cached_tokens", e.num_tokens},
                                   {"ram_tokens", std::max<int64_t>(e.num_tokens - e.disk_tokens - e.pinned_tokens, 0)},
                                   {"disk_tokens", e.disk_tokens}, {"pinned_tokens", e.pinned_tokens}}, e.at);
        break;
      case Kind::kPrefillChunk:
        trace.add("prefill_chunk", {{"step", e.step}, {"start", e.start}, {"tokens", e.num_tokens}, {"step_tokens", e.step_tokens}}, e.at,
                  ms(e.duration_s));
        break;
      case Kind::kPreempted: trace.add("preempted", {{"step", e.step}}, e.at); break;
      case Kind::kFirstToken:
        first_token = e.at;
        trace.add("first_token", {{"step", e.step}}, e.at);
        break;
    }
  }
  if (first_token != engine::Clock::time_point{}) {
    nlohmann::json attributes = {{"tokens", finished.usage.completion_tokens}};
    if (finished.num_draft_tokens > 0) {
      attributes["draft_tokens"] = finished.num_draft_tokens;
      attributes["accepted_tokens"] = finished.num_accepted_tokens;
    }
    trace.add("decode", std::move(attributes), first_token, ms(std::chrono::duration<double>(engine::Clock::now() - first_token).count()));
  }
}

}  // namespace

std::expected<std::shared_ptr<Call>, ApiError> LocalProvider::submit(const wire::Request& request, wire::EventSink sink) {
  auto prepared = prepare(request);
  if (!prepared) return std::unexpected(prepared.error());
  // A reply that may call tools: the calls are read out of its text as it streams.
  std::shared_ptr<tool_calls::ToolCallParser> parser;
  if (request.wants_tools()) parser = std::make_shared<tool_calls::ToolCallParser>(tool_format_);
  // Runs on the engine thread: only moves, plus token text when logprobs were asked for.
  const std::string request_param = request.wants_tools() ? "tools" : "response_format";
  auto convert = [this, parser, request_param, trace = request.trace, arrival = prepared->arrival, adapter_name = request.adapter,
                  sink = std::move(sink)](engine::GenerationEvent&& in) {
    if (in.finished && trace) add_engine_trace(*trace, arrival, in);
    wire::Event out;
    out.text = std::move(in.text);
    if (parser) {
      auto parsed = parser->push(out.text);
      if (in.finished) {
        auto rest = parser->finish();
        parsed.text += rest.text;
        for (auto& call : rest.calls) parsed.calls.push_back(std::move(call));
        if (parser->num_calls() > 0 && in.finish_reason == "stop" && in.stop_sequence.empty()) in.finish_reason = "tool_calls";
      }
      out.text = std::move(parsed.text);
      out.tool_calls = std::move(parsed.calls);
    }
    const tok::Tokenizer& tokenizer = model_.tokenizer();
    for (const auto& lp : in.logprobs) {
      wire::TokenLogprob entry{.bytes = tokenizer.token_bytes(lp.token, /*render_special=*/true),
                              .text_length = static_cast<int64_t>(tokenizer.token_bytes(lp.token).size()),
                              .logprob = lp.logprob,
                              .top = {}};
      for (const auto& [id, value] : lp.top) entry.top.emplace_back(tokenizer.token_bytes(id, true), value);
      out.logprobs.push_back(std::move(entry));
    }
    out.finished = in.finished;
    if (in.finished) out.adapter = adapter_name;
    if (in.queued_seconds >= 0) out.queued_ms = in.queued_seconds * 1000.0;
    out.finish_reason = std::move(in.finish_reason);
    out.stop_sequence = std::move(in.stop_sequence);
    if (in.error == engine::kGrammarDeadEnd) {
      out.error = bad_request(std::move(in.error), request_param);  // the schema's fault, found only while generating
    } else if (!in.error.empty()) {
      out.error = wire::server_error(500, std::move(in.error));
    }
    out.usage = {.prompt_tokens = in.usage.prompt_tokens, .completion_tokens = in.usage.completion_tokens,
                 .cached_tokens = in.usage.cached_tokens, .cache_write_tokens = 0, .cache_write_1h_tokens = 0,
                 .retention_denied_tokens = in.usage.retention_denied_tokens, .cost_usd = std::nullopt};
    for (const auto& [ttl_s, tokens] : in.usage.cache_write_tokens_by_ttl_s) {
      out.usage.cache_write_tokens += tokens;
      if (ttl_s >= 3600) out.usage.cache_write_1h_tokens += tokens;
    }
    sink(std::move(out));
  };
  prepared->trace = request.trace != nullptr;
  auto id = engine_.submit(std::move(*prepared), std::move(convert));
  if (!id) {
    switch (id.error().kind) {
      case engine::SubmitError::kQueueFull:
        return std::unexpected(ApiError{.status = 429, .message = id.error().message, .type = "rate_limit_error", .param = {},
                                        .code = "queue_full", .is_retryable = true, .retry_after = "1"});
      case engine::SubmitError::kTooLong: return std::unexpected(bad_request(id.error().message, "max_tokens"));
      case engine::SubmitError::kStopped: return std::unexpected(wire::server_error(503, id.error().message, "shutting_down"));
    }
  }
  return std::make_shared<LocalCall>(engine_, *id);
}

}  // namespace tern::router
