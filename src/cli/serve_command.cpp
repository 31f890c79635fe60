// `tern serve`: the OpenAI-compatible server over one local model (docs/serving.md). The listening
// socket opens first, so /health answers and /ready says "loading" while the model loads.

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "api/gateway.h"
#include "http/server.h"
#include "router/local_provider.h"
#include "router/router.h"
#include "cli/commands.h"
#include "cli/generation.h"
#include "engine/engine.h"
#include "engine/kv/kv_sizing.h"
#include "kernels/cpu/cpu_features.h"
#include "util/units.h"

namespace tern::cli {
namespace {

struct ServeOptions {
  std::string model{models::kDefaultModel};
  std::string served_name;
  std::string chat_template;
  http::ServerConfig server;
  int threads = 0;
  int64_t context = 0;
  std::string kv_cache_memory;
  int64_t max_batch_tokens = 512;
  std::string itl_target = "100ms";
  std::string max_prefill_wait = "2s";
  int64_t max_running = 64;
  int64_t max_waiting = 4096;
  bool no_prefix_caching = false;
  double drain_timeout_s = 30;
  double read_timeout_s = 30;
  double write_timeout_s = 30;
};

/// Thousands of connections need thousands of descriptors: lift the soft limit to the hard one.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

int serve(const ServeOptions& o) {
  raise_descriptor_limit();
  http::ServerConfig server_config = o.server;
  server_config.drain_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.drain_timeout_s * 1000));
  server_config.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.read_timeout_s * 1000));
  server_config.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.write_timeout_s * 1000));
  http::Server server(server_config);
  api::Gateway gateway(server);
  auto port = server.listen();
  if (!port) {
    std::fprintf(stderr, "error: %s\n", port.error().message.c_str());
    return 1;
  }
  server.start();
  std::fprintf(stderr, "tern serve: listening on http://%s:%u (loading the model)\n", o.server.host.c_str(), *port);

  auto path = resolve_model_or_report(o.model);
  if (!path) return 1;
  std::unique_ptr<backend::Backend> backend = backend::make_cpu_backend(o.threads);
  auto loaded = model::Model::load(*path, *backend);
  if (!loaded) {
    std::fprintf(stderr, "error: %s\n", loaded.error().message.c_str());
    return 1;
  }
  std::unique_ptr<model::Model> model = std::move(*loaded);
  std::optional<chat::ChatTemplate> chat_template;
  if (auto source = chat_template_source(*model, o.chat_template); source) {
    auto parsed = chat::ChatTemplate::parse(*source);
    if (!parsed) {
      std::fprintf(stderr, "error: the chat template: %s\n", parsed.error().message.c_str());
      return 1;
    }
    chat_template = std::move(*parsed);
  } else if (!o.chat_template.empty()) {
    std::fprintf(stderr, "error: %s\n", source.error().message.c_str());
    return 1;
  } else {
    std::fprintf(stderr, "tern serve: %s has no chat template: /v1/chat/completions will answer 400 (use --chat-template)\n",
                 model->file().name().c_str());
  }

  engine::EngineConfig config;
  config.model_name = o.served_name.empty() ? (o.model.ends_with(".gguf") ? model->file().name() : o.model) : o.served_name;
  engine::KvSizingRequest kv_request;
  kv_request.context = o.context;
  kv_request.block_size = config.block_size;
  if (o.kv_cache_memory.empty()) {
    kv_request.memory_bytes = engine::default_kv_memory_bytes();
  } else {
    auto bytes = parse_bytes(o.kv_cache_memory);
    if (!bytes) {
      std::fprintf(stderr, "error: --kv-cache-memory: %s\n", bytes.error().message.c_str());
      return 1;
    }
    kv_request.memory_bytes = *bytes;
  }
  auto kv = engine::size_kv_cache(*model, kv_request);
  if (!kv) {
    std::fprintf(stderr, "error: --kv-cache-memory %s: %s\n", o.kv_cache_memory.empty() ? "(default)" : o.kv_cache_memory.c_str(),
                 kv.error().message.c_str());
    return 1;
  }
  config.max_model_len = kv->max_model_len;
  config.num_kv_blocks = kv->num_blocks;
  config.max_waiting = o.max_waiting;
  config.prefix_caching = !o.no_prefix_caching;
  auto itl_target = parse_seconds(o.itl_target);
  auto max_prefill_wait = parse_seconds(o.max_prefill_wait);
  if (!itl_target || !max_prefill_wait) {
    std::fprintf(stderr, "error: %s: %s\n", itl_target ? "--max-prefill-wait" : "--itl-target",
                 (itl_target ? max_prefill_wait : itl_target).error().message.c_str());
    return 1;
  }
  config.scheduler = {.max_batch_tokens = o.max_batch_tokens,
                      .max_running = o.max_running,
                      .itl_target_s = *itl_target,
                      .max_prefill_wait_s = *max_prefill_wait};

  engine::Engine engine(*model, config);
  engine.start();
  router::Router router;
  auto local = std::make_shared<router::LocalProvider>(config.model_name, *model, engine, std::move(chat_template));
  // A local queue-full answers at once (no retry on the same engine); other deployments may still take it.
  router.add_deployment({.name = config.model_name, .kind = "local", .prices = {}, .max_concurrency = 0, .retries = 0, .breaker = {}}, local);
  std::vector<std::string> aliases;
  if (local->file_name() != config.model_name) aliases.push_back(local->file_name());
  router.add_model(config.model_name, {config.model_name}, router::Policy::kLeastOutstanding, aliases, config.max_model_len);
  gateway.set_metrics_source([&engine] { return engine.metrics().render(); });
  server.set_drain_hook([&router] { router.stop_all(); });
  gateway.set_router(&router);
  std::fprintf(stderr,
               "tern serve: ready: model '%s' (%s), %d threads, %s kernels, context %lld, KV cache %lld tokens (%lld MiB), "
               "prefix caching %s, max %lld running / %lld tokens per step, ITL target %s\n",
               config.model_name.c_str(), model->config().arch_name.c_str(), backend->num_threads(),
               kernels::isa_name(kernels::best_isa()), static_cast<long long>(config.max_model_len),
               static_cast<long long>(config.num_kv_blocks * config.block_size),
               static_cast<long long>(kv->bytes() >> 20), config.prefix_caching ? "on" : "off",
               static_cast<long long>(config.scheduler.max_running), static_cast<long long>(config.scheduler.max_batch_tokens),
               config.scheduler.itl_target_s > 0 ? o.itl_target.c_str() : "off");
  server.wait();
  engine.stop();
  std::fprintf(stderr, "tern serve: stopped\n");
  return 0;
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto* command = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API");
  auto o = std::make_shared<ServeOptions>();
  command->add_option("-m,--model", o->model, "Model alias or .gguf path")->capture_default_str();
  command->add_option("--served-model-name", o->served_name, "Name clients use in \"model\" (default: the alias or file name)");
  command->add_option("--host", o->server.host, "Address to listen on")->capture_default_str();
  command->add_option("--port", o->server.port, "Port (0: any free port)")->capture_default_str();
  command->add_option("-t,--threads", o->threads, "Compute threads (0: one per core)")->capture_default_str()->check(CLI::Range(0, 1024));
  command->add_option("--io-threads", o->server.io_threads, "HTTP I/O threads")->capture_default_str()->check(CLI::Range(1, 64));
  command->add_option("-c,--context", o->context, "Longest request, prompt + output, in tokens (default: the model's, at most 8192)")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 22));
  command->add_option("--kv-cache-memory", o->kv_cache_memory, "KV cache size, e.g. 2G (default: 1/4 of available memory, at most 4G)");
  command->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens computed per engine step")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  command->add_option("--itl-target", o->itl_target,
                      "Keep steps that carry decoding streams under this time by sizing prompt chunks from a learned "
                      "step-time model (e.g. 100ms; off: chunks fill --max-batch-tokens)")
      ->capture_default_str();
  command->add_option("--max-prefill-wait", o->max_prefill_wait,
                      "Past this wait since arrival, a prompt plans against --itl-target scaled by wait / this (ageing: prompts never starve)")
      ->capture_default_str();
  command->add_option("--max-running", o->max_running, "Requests computed concurrently")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  command->add_option("--max-waiting", o->max_waiting, "Queued requests before answering 429")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  command->add_flag("--no-prefix-caching", o->no_prefix_caching, "Do not reuse the KV cache of shared prompt prefixes");
  command->add_option("--chat-template", o->chat_template, "Jinja chat template file (default: the model's)");
  command->add_option("--max-body-bytes", o->server.max_body_bytes, "Largest request body")->capture_default_str();
  command->add_option("--drain-timeout", o->drain_timeout_s, "Seconds in-flight requests may finish after SIGTERM")->capture_default_str()->check(CLI::Range(0.0, 86400.0));
  command->add_option("--read-timeout", o->read_timeout_s, "Seconds a client has to send a whole request")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  command->add_option("--write-timeout", o->write_timeout_s, "Seconds one write may wait on a client that stopped reading")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  return [o]() { return serve(*o); };
}

}  // namespace tern::cli
