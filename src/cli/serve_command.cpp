// `tern serve`: the OpenAI- and Anthropic-compatible server over local models and remote deployments
// (docs/serving.md, docs/gateway.md). With -m it serves one local model; with --config, everything
// the file names. The listening socket opens first, so /health answers and /ready says "loading"
// while models load.

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "api/gateway.h"
#include "metering/ledger_writer.h"
#include "observe/kv_block_index.h"
#include "observe/live_stats.h"
#include "observe/otlp_exporter.h"
#include "observe/request_log.h"
#include "observe/trace.h"
#include "tenants/tenants.h"
#include "util/tern_home.h"
#include "cli/commands.h"
#include "cli/generation.h"
#include "http/server.h"
#include "kernels/cpu/cpu_features.h"
#include "router/config.h"
#include "router/local_model.h"
#include "router/prompt_encoder.h"
#include "router/router.h"
#include "util/units.h"

namespace tern::cli {
namespace {

struct ServeOptions {
  std::string config_file;
  std::string tls_cert;
  std::string tls_key;
  std::string model{models::kDefaultModel};
  std::string served_name;
  std::string chat_template;
  http::ServerConfig server;
  int threads = 0;
  int64_t context = 0;
  std::string kv_cache_memory;
  int64_t max_batch_tokens = 512;
  std::string itl_target = engine::kDefaultItlTarget;
  std::string max_prefill_wait = "2s";
  std::string prefill_order = "fcfs";
  int64_t max_running = 64;
  int64_t max_waiting = 4096;
  bool no_prefix_caching = false;
  double kv_pin_fraction = 0.5;
  std::string kv_pin_quota;
  std::string kv_disk_cache;
  std::string kv_disk_bytes = "20G";
  std::vector<std::string> loras;  // NAME=PATH
  int64_t max_loras = 64;
  int64_t max_lora_rank = 64;
  std::string lora_dtype = "f16";
  std::string keys_db;
  std::string ledger;
  int64_t ledger_retention_days = -1;
  std::string request_log;
  std::string request_log_max_bytes;  // "256M"; empty: the config's, else 256 MiB
  int request_log_keep = -1;
  bool log_content = false;
  std::string metrics_compat;  // "" or "vllm"
  int64_t traces = -1;         // request timelines kept; -1: the config's, else 4096
  std::string otlp_endpoint;
  std::string otlp_service_name;
  std::string console;         // "on", "off"; empty: the config's, else on
  std::string kv_events_endpoint, kv_events_pod, kv_events_hash_seed;
  double budget_alert = 0.8;
  bool insecure_no_auth = false;
  double drain_timeout_s = 30;
  SpeculationFlags speculation;
  double read_timeout_s = 30;
  double write_timeout_s = 30;
  // Which of the overlapping flags were given (they win over the config file's `server:`).
  bool host_given = false;
  bool port_given = false;
  bool model_given = false;
};

/// Thousands of connections need thousands of descriptors: lift the soft limit to the hard one.
void raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

/// What the web console's sampler reads each second: the local engines and the router's deployments.
observe::GaugeSample gauge_sample(const router::LocalModelSet& models, const router::Router& router) {
  observe::GaugeSample out{.engines = models.engine_samples(), .deployments = {}};
  for (const auto& d : router.stats()) {
    out.deployments.push_back({.name = d.name, .kind = d.kind, .breaker = d.breaker, .outstanding = d.outstanding,
                               .requests = d.requests, .failures = d.failures, .ttft_ewma_s = d.ttft_ewma_s});
  }
  return out;
}

/// Runs the console's sampler while it lives.
class LiveStatsRun {
 public:
  LiveStatsRun(observe::LiveStats& stats, std::function<observe::GaugeSample()> source) : stats_(stats) { stats_.start(std::move(source)); }
  ~LiveStatsRun() { stats_.stop(); }
  LiveStatsRun(const LiveStatsRun&) = delete;
  LiveStatsRun& operator=(const LiveStatsRun&) = delete;

 private:
  observe::LiveStats& stats_;
};

bool is_loopback(const std::string& host) { return host == "localhost" || host == "::1" || host.starts_with("127."); }

/// The request log, if the flags or the config name one (null otherwise).
Result<std::unique_ptr<observe::RequestLog>> open_request_log(const ServeOptions& o, const router::GatewayConfig& config) {
  observe::RequestLogOptions options;
  options.path = !o.request_log.empty() ? o.request_log : config.request_log;
  if (options.path.empty()) {
    if (o.log_content) return fail("--log-content needs --request-log (or request_log in the config)");
    return std::unique_ptr<observe::RequestLog>();
  }
  if (!o.request_log_max_bytes.empty()) {
    auto bytes = parse_bytes(o.request_log_max_bytes);
    if (!bytes) return fail("--request-log-max-bytes: {}", bytes.error().message);
    options.max_bytes = *bytes;
  } else if (config.request_log_max_bytes > 0) {
    options.max_bytes = config.request_log_max_bytes;
  }
  options.keep = o.request_log_keep >= 0 ? o.request_log_keep : config.request_log_keep >= 0 ? config.request_log_keep : options.keep;
  options.log_content = o.log_content || config.request_log_content;
  auto log = observe::RequestLog::open(options);
  if (!log) return std::unexpected(log.error());
  std::fprintf(stderr, "tern serve: request log: %s (rotated at %lld MiB, %d old files kept%s)\n", options.path.c_str(),
               static_cast<long long>(options.max_bytes >> 20), options.keep, options.log_content ? ", with prompts and outputs" : "");
  return log;
}

/// The key store, and the ledger unless it is "off"; the server refuses to start if either fails.
struct Accounting {
  std::unique_ptr<tenants::Tenants> tenants;
  std::unique_ptr<metering::LedgerWriter> ledger;  // destroyed first: its last queries may use the tenants
};

Result<Accounting> open_accounting(const ServeOptions& o, const router::GatewayConfig& config) {
  Accounting out;
  const std::string location = !o.ledger.empty() ? o.ledger : !config.ledger.empty() ? config.ledger : metering::default_ledger_path();
  if (location != "off") {
    auto store = metering::open_ledger(location);
    if (!store) return std::unexpected(store.error());
    const int64_t retention = o.ledger_retention_days >= 0 ? o.ledger_retention_days : std::max<int64_t>(0, config.ledger_retention_days);
    std::fprintf(stderr, "tern serve: ledger: %s%s\n", (*store)->describe().c_str(),
                 retention > 0 ? fmt::format(" (rows kept {} days)", retention).c_str() : "");
    out.ledger = std::make_unique<metering::LedgerWriter>(
        std::move(*store), metering::LedgerWriterOptions{.retention_days = retention, .max_batch_rows = 8192, .retention_batch_rows = 1000,
                                                         .spill_path = tern_home() + "/ledger-spill.jsonl"});
  }
  const std::string keys_path = !o.keys_db.empty() ? o.keys_db : !config.keys_db.empty() ? config.keys_db : tenants::KeyStore::default_path();
  auto keys = tenants::KeyStore::open(keys_path);
  if (!keys) return std::unexpected(keys.error());
  metering::LedgerWriter* ledger = out.ledger.get();
  auto spend = [ledger](const std::string& key_id, int64_t since_ms) -> Result<double> {
    if (ledger == nullptr) return 0.0;
    auto totals = ledger->store().usage({.from_ms = since_ms, .to_ms = INT64_MAX, .key_id = key_id, .group_by = metering::GroupBy::kNone});
    if (!totals) return std::unexpected(totals.error());
    return totals->empty() ? 0.0 : totals->front().cost_usd;
  };
  out.tenants = std::make_unique<tenants::Tenants>(std::move(*keys), spend, tenants::TenantOptions{.budget_alert_ratio = o.budget_alert});
  if (auto loaded = out.tenants->load(); !loaded) return with_context("keys", loaded.error());
  std::fprintf(stderr, "tern serve: keys: %s (%s)\n", keys_path.c_str(),
               out.tenants->auth_required() ? "every request needs a key" : "none yet: the server is open");
  return out;
}

/// -m and its flags as a one-model config.
Result<router::GatewayConfig> config_from_flags(const ServeOptions& o) {
  router::LocalModelEntry entry;
  router::LocalModelConfig& m = entry.model;
  m.model = o.model;
  m.name = o.served_name.empty() ? (o.model.ends_with(".gguf") ? std::filesystem::path(o.model).filename().string() : o.model) : o.served_name;
  m.chat_template = o.chat_template;
  m.threads = o.threads;
  m.context = o.context;
  if (!o.kv_cache_memory.empty()) {
    auto bytes = parse_bytes(o.kv_cache_memory);
    if (!bytes) return fail("--kv-cache-memory: {}", bytes.error().message);
    m.kv_cache_memory = *bytes;
  }
  auto max_prefill_wait = parse_seconds(o.max_prefill_wait);
  if (!max_prefill_wait) return fail("--max-prefill-wait: {}", max_prefill_wait.error().message);
  m.scheduler = {.max_batch_tokens = o.max_batch_tokens, .max_running = o.max_running, .max_prefill_wait_s = *max_prefill_wait};
  if (auto ok = engine::parse_itl_target(o.itl_target, m.scheduler); !ok) return fail("--itl-target: {}", ok.error().message);
  auto prefill_order = engine::parse_prefill_order(o.prefill_order);
  if (!prefill_order) return fail("--prefill-order: must be fcfs or shortest (got \"{}\")", o.prefill_order);
  m.scheduler.prefill_order = *prefill_order;
  auto speculation = speculation_config(o.speculation);
  if (!speculation) return std::unexpected(speculation.error());
  m.speculation = *speculation;
  m.max_waiting = o.max_waiting;
  m.prefix_caching = !o.no_prefix_caching;
  m.kv_pin_fraction = o.kv_pin_fraction;
  if (!o.kv_pin_quota.empty()) {
    auto bytes = parse_bytes(o.kv_pin_quota);
    if (!bytes) return fail("--kv-pin-quota: {}", bytes.error().message);
    m.kv_pin_quota = *bytes;
  }
  m.kv_disk_cache = o.kv_disk_cache;
  auto disk_bytes = parse_bytes(o.kv_disk_bytes);
  if (!disk_bytes) return fail("--kv-disk-bytes: {}", disk_bytes.error().message);
  m.kv_disk_bytes = *disk_bytes;
  m.preload = true;
  m.max_loras = o.max_loras;
  m.max_lora_rank = o.max_lora_rank;
  auto lora_dtype = model::parse_lora_weight_type(o.lora_dtype);
  if (!lora_dtype) return fail("--lora-dtype: {}", lora_dtype.error().message);
  m.lora_dtype = *lora_dtype;
  for (const std::string& flag : o.loras) {
    const size_t eq = flag.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == flag.size()) return fail("--lora {}: expected NAME=PATH", flag);
    engine::AdapterSpec spec{.name = flag.substr(0, eq), .path = flag.substr(eq + 1), .scale = 1.0f};
    if (auto ok = engine::check_adapter_name(spec.name); !ok) return fail("--lora: {}", ok.error().message);
    if (spec.name == m.name) return fail("--lora {}: the adapter has the served model's name", flag);
    for (const auto& other : m.loras) {
      if (other.name == spec.name) return fail("--lora: two adapters are named '{}'", spec.name);
    }
    m.loras.push_back(std::move(spec));
  }
  entry.model_where = "-m";
  entry.deployment = {.name = m.name, .kind = "local", .prices = {}, .max_concurrency = 0, .retries = 0, .breaker = {}, .labels = {}, .kv_source = {}};
  router::GatewayConfig config;
  config.local.push_back(std::move(entry));
  return config;
}

int serve(const ServeOptions& o) {
  raise_descriptor_limit();
  if (!o.config_file.empty() && o.model_given) {
    std::fprintf(stderr, "error: give either -m or --config (the config file names its models)\n");
    return 2;
  }
  auto config = o.config_file.empty() ? config_from_flags(o) : router::load_gateway_config(o.config_file);
  if (!config) {
    std::fprintf(stderr, "error: %s\n", config.error().message.c_str());
    return 1;
  }
  // What would fail only at a lazy model's first request is refused now, pointing at its line.
  for (const auto& entry : config->local) {
    if (auto ok = router::check_local_model(entry.model); !ok) {
      std::fprintf(stderr, "error: %s: %s\n", entry.model_where.c_str(), ok.error().message.c_str());
      return 1;
    }
  }
  http::ServerConfig server_config = o.server;
  if (!o.host_given && !config->host.empty()) server_config.host = config->host;
  if (!o.port_given && config->port >= 0) server_config.port = static_cast<uint16_t>(config->port);
  server_config.drain_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.drain_timeout_s * 1000));
  server_config.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.read_timeout_s * 1000));
  server_config.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.write_timeout_s * 1000));

  // Declared in this order so that they are destroyed in the reverse: the server's sessions before
  // the ledger and the keys their exchanges still write to.
  auto accounting = open_accounting(o, *config);
  if (!accounting) {
    std::fprintf(stderr, "error: %s\n", accounting.error().message.c_str());
    return 1;
  }
  if (!accounting->tenants->auth_required() && !is_loopback(server_config.host) && !o.insecure_no_auth) {
    std::fprintf(stderr,
                 "error: no API keys exist, so anyone who can reach %s could use this server. Create one first "
                 "(tern keys create --name NAME), listen on 127.0.0.1, or pass --insecure-no-auth\n",
                 server_config.host.c_str());
    return 2;
  }
  tenants::Tenants& tenants = *accounting->tenants;
  auto request_log = open_request_log(o, *config);
  if (!request_log) {
    std::fprintf(stderr, "error: %s\n", request_log.error().message.c_str());
    return 1;
  }
  // Keys created or revoked by `tern keys` in another process take effect within a second.
  std::jthread key_watcher([&tenants](std::stop_token stop) {
    while (!stop.stop_requested()) {
      for (int i = 0; i < 10 && !stop.stop_requested(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      tenants.reload_if_changed();
    }
  });
  http::Server server(server_config);
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    std::fprintf(stderr, "error: give both --tls-cert and --tls-key\n");
    return 2;
  }
  if (!o.tls_cert.empty()) {
    if (auto ok = server.enable_tls(o.tls_cert, o.tls_key); !ok) {
      std::fprintf(stderr, "error: %s\n", ok.error().message.c_str());
      return 1;
    }
  }
  // Traces (kept for /admin/requests/{id} and the console, exported over OTLP) and the console's figures.
  const int64_t traces_keep = o.traces >= 0 ? o.traces : config->traces_keep >= 0 ? config->traces_keep : 4096;
  std::unique_ptr<observe::TraceStore> traces = traces_keep > 0 ? std::make_unique<observe::TraceStore>(static_cast<size_t>(traces_keep)) : nullptr;
  std::unique_ptr<observe::OtlpExporter> otlp;
  if (const std::string endpoint = !o.otlp_endpoint.empty() ? o.otlp_endpoint : config->otlp_endpoint; !endpoint.empty()) {
    observe::OtlpOptions options{.endpoint = endpoint};
    if (const std::string name = !o.otlp_service_name.empty() ? o.otlp_service_name : config->otlp_service_name; !name.empty()) {
      options.service_name = name;
    }
    auto started = observe::OtlpExporter::start(std::move(options));
    if (!started) {
      std::fprintf(stderr, "error: %s\n", started.error().message.c_str());
      return 2;
    }
    otlp = std::move(*started);
    std::fprintf(stderr, "tern serve: exporting request traces to %s/v1/traces (OTLP/HTTP JSON)\n", endpoint.c_str());
  }
  const bool console = !o.console.empty() ? o.console == "on" : config->console.value_or(true);
  std::unique_ptr<observe::LiveStats> live = console ? std::make_unique<observe::LiveStats>() : nullptr;
  api::Gateway gateway(server, &tenants, accounting->ledger.get());
  gateway.set_observers({.request_log = request_log->get(), .traces = traces.get(), .otlp = otlp.get(), .live = live.get()});
  gateway.set_vllm_metrics(o.metrics_compat == "vllm" || config->metrics_compat == "vllm");
  gateway.set_placement_policies(config->org_policies, config->key_policies);
  router::LocalModelSet local_models(config->memory_budget_bytes);
  router::Router router;
  router::LoraAdapters lora_adapters(router);
  auto port = server.listen();
  if (!port) {
    std::fprintf(stderr, "error: %s\n", port.error().message.c_str());
    return 1;
  }
  server.start();
  std::fprintf(stderr, "tern serve: listening on %s://%s:%u (loading)\n", server.is_tls() ? "https" : "http", server_config.host.c_str(), *port);

  // Each local model is a deployment and a public name of its own (plus its aliases and, once loaded,
  // its file's name); remote deployments likewise; routes name several.
  for (const auto& entry : config->local) {
    // KV-cache events for every local model: the flags, else the config's `kv_events:`.
    router::LocalModelConfig model_config = entry.model;
    model_config.kv_events_endpoint = !o.kv_events_endpoint.empty() ? o.kv_events_endpoint : config->kv_events_endpoint;
    model_config.kv_events_pod = !o.kv_events_pod.empty() ? o.kv_events_pod : config->kv_events_pod;
    model_config.kv_events_hash_seed = !o.kv_events_hash_seed.empty() ? o.kv_events_hash_seed : config->kv_events_hash_seed;
    std::shared_ptr<router::LocalModel> model = local_models.add(std::move(model_config));
    if (entry.model.preload) {
      if (auto loaded = model->load(); !loaded) {
        std::fprintf(stderr, "error: %s\n", loaded.error().message.c_str());
        return 1;
      }
    }
    router.add_deployment(entry.deployment, model);
    router.add_model(entry.model.name, {entry.model.name}, router::Policy::kLeastOutstanding, entry.aliases, model->max_model_len());
    // Requests may also name a loaded model by its file (not listed in /v1/models: it is no name the operator chose).
    if (const std::string file = model->file_name(); !file.empty() && file != entry.model.name) router.add_unlisted_alias(entry.model.name, file);
    if (auto ok = lora_adapters.add_base(model, entry.deployment.prices, entry.deployment.labels); !ok) {
      std::fprintf(stderr, "error: %s\n", ok.error().message.c_str());
      return 1;
    }
  }
  for (auto& entry : config->remote) {
    auto provider = router::make_remote_provider(entry.remote, server.executor());
    if (!provider) {
      std::fprintf(stderr, "error: %s\n", provider.error().message.c_str());
      return 1;
    }
    router.add_deployment(entry.deployment, std::move(*provider));
  }
  for (const auto& entry : config->remote) router.add_model(entry.remote.name, {entry.remote.name}, router::Policy::kPrice);
  for (const auto& route : config->routes) router.add_model(route.name, route.deployments, route.policy, route.aliases);
  // Replica-aware routing (policy kv-events): the replicas' KV-cache events, and each route's prompt encoder.
  std::shared_ptr<observe::KvBlockIndex> kv_index;
  if (!config->kv_events_listen.empty()) {
    auto index = observe::KvBlockIndex::listen(config->kv_events_listen);
    if (!index) {
      std::fprintf(stderr, "error: %s\n", index.error().message.c_str());
      return 1;
    }
    kv_index = std::move(*index);
    router.set_kv_index(kv_index, config->kv_events_hash_seed);
    std::fprintf(stderr, "tern serve: receiving replicas' KV-cache events on %s\n", config->kv_events_listen.c_str());
  }
  for (const auto& route : config->routes) {
    if (route.tokenizer.empty()) continue;
    auto encoder = router::PromptEncoder::load(route.tokenizer, route.chat_template);
    if (!encoder) {
      std::fprintf(stderr, "error: routes '%s': tokenizer %s: %s\n", route.name.c_str(), route.tokenizer.c_str(), encoder.error().message.c_str());
      return 1;
    }
    router.set_prompt_encoder(route.name, std::move(*encoder), route.decode_token_cost);
  }

  gateway.set_metrics_source([&local_models, kv_index] {
    return local_models.metrics_text() + (kv_index ? observe::kv_index_metrics_text(kv_index->stats()) : std::string());
  });
  // The console's sampler reads the models and the router: it stops before they go (declared after them).
  std::optional<LiveStatsRun> live_run;
  if (live) live_run.emplace(*live, [&local_models, &router] { return gauge_sample(local_models, router); });
  server.set_drain_hook([&router] { router.stop_all(); });
  gateway.set_router(&router);
  gateway.set_lora_adapters(&lora_adapters);
  std::string names;
  for (const auto& m : router.models()) names += (names.empty() ? "'" : ", '") + m.name + "'";
  std::fprintf(stderr, "tern serve: ready: %s; %s kernels; %zu local, %zu remote deployments%s\n", names.c_str(),
               kernels::isa_name(kernels::best_isa()), config->local.size(), config->remote.size(),
               o.config_file.empty() ? "" : (" from " + o.config_file).c_str());
  server.wait();
  router.stop_all();
  // Rows of requests that just finished are committed, and their last bytes and pending spend queries
  // answered, while the connections still exist; nothing calls back into the server after this.
  if (accounting->ledger) accounting->ledger->close_callbacks();
  std::fprintf(stderr, "tern serve: stopped\n");
  return 0;
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto* command = app.add_subcommand("serve", "Serve models over OpenAI- and Anthropic-compatible HTTP APIs");
  auto o = std::make_shared<ServeOptions>();
  command->add_option("--config", o->config_file, "Gateway config (YAML): local models, remote deployments, routes, prices (docs/gateway.md)");
  auto* model = command->add_option("-m,--model", o->model, "Model alias or .gguf path (one local model; or use --config)")->capture_default_str();
  command->add_option("--served-model-name", o->served_name, "Name clients use in \"model\" (default: the alias or file name)");
  auto* host = command->add_option("--host", o->server.host, "Address to listen on")->capture_default_str();
  auto* port = command->add_option("--port", o->server.port, "Port (0: any free port)")->capture_default_str();
  command->add_option("-t,--threads", o->threads, "Compute threads (0: one per core)")->capture_default_str()->check(CLI::Range(0, 1024));
  command->add_option("--io-threads", o->server.io_threads, "HTTP I/O threads")->capture_default_str()->check(CLI::Range(1, 64));
  command->add_option("-c,--context", o->context, "Longest request, prompt + output, in tokens (default: the model's, at most 8192)")
      ->check(CLI::Range(int64_t{16}, int64_t{1} << 22));
  command->add_option("--kv-cache-memory", o->kv_cache_memory, "KV cache size, e.g. 2G (default: 1/4 of available memory, at most 4G)");
  command->add_option("--max-batch-tokens", o->max_batch_tokens, "Tokens computed per engine step")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  command->add_option("--itl-target", o->itl_target,
                      "Bound steps that carry decoding streams by sizing prompt chunks from a learned step-time model: a "
                      "multiple of the step's decodes alone (1.4x), or a time (100ms, with ageing); off: chunks fill --max-batch-tokens")
      ->capture_default_str();
  command->add_option("--max-prefill-wait", o->max_prefill_wait,
                      "With a time as --itl-target: past this wait since arrival, a prompt plans against it scaled by wait / this (ageing); "
                      "with --prefill-order shortest: past this wait, the longest-waiting prompt goes first one step in four")
      ->capture_default_str();
  command->add_option("--prefill-order", o->prefill_order,
                      "Which prompts get prefill first: fcfs (arrival order) or shortest (least uncached prefill left first, "
                      "so short and cached prompts go first; the longest-waiting prompt past --max-prefill-wait goes first one step in four)")
      ->capture_default_str();
  command->add_option("--max-running", o->max_running, "Requests computed concurrently")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  command->add_option("--max-waiting", o->max_waiting, "Queued requests before answering 429")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  add_speculation_options(*command, o->speculation, /*is_server=*/true);
  command->add_flag("--no-prefix-caching", o->no_prefix_caching, "Do not reuse the KV cache of shared prompt prefixes");
  command->add_option("--kv-pin-fraction", o->kv_pin_fraction,
                      "Most of the KV cache that cache retention (cache_control ttl, prompt_cache_retention=24h) may pin, all orgs together")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_option("--kv-disk-cache", o->kv_disk_cache,
                      "Directory of a KV cache disk tier: computed prompt blocks are kept there and read back on a hit, also after a restart");
  command->add_option("--kv-disk-bytes", o->kv_disk_bytes, "Size cap of the KV disk tier, e.g. 20G")->capture_default_str();
  command->add_option("--kv-pin-quota", o->kv_pin_quota, "KV cache each org may pin, e.g. 256M (default: no limit below --kv-pin-fraction)");
  command->add_option("--lora", o->loras, "Serve a LoRA adapter as model NAME: NAME=PATH (a GGUF LoRA file or a PEFT directory; repeatable)");
  command->add_option("--max-loras", o->max_loras, "LoRA adapters kept in memory (least recently used dropped; reloaded on demand)")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 16));
  command->add_option("--max-lora-rank", o->max_lora_rank, "Refuse LoRA adapters of a higher rank")->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{4096}));
  command->add_option("--lora-dtype", o->lora_dtype,
                      "How LoRA adapters keep their weights in memory: f16 (the file's values to F16's precision) or q8 "
                      "(8-bit blocks as llama.cpp's Q8_0: 55% of f16's memory)")
      ->capture_default_str();
  command->add_option("--chat-template", o->chat_template, "Jinja chat template file (default: the model's)");
  command->add_option("--keys-db", o->keys_db, "API key store (SQLite; default $TERN_HOME/keys.db; see tern keys)");
  command->add_option("--ledger", o->ledger, "Where each request's usage and cost are recorded: a SQLite file (default $TERN_HOME/ledger.db), "
                                             "a postgresql:// URL, or off");
  command->add_option("--request-log", o->request_log,
                      "Write one JSON line per request to this file (ids, times, tokens, model, key, status, cost; docs/observability.md)");
  command->add_option("--request-log-max-bytes", o->request_log_max_bytes, "Rotate the request log past this size (default 256M)");
  command->add_option("--request-log-keep", o->request_log_keep, "Rotated request logs kept (FILE.1 ...; default 5)");
  command->add_flag("--log-content", o->log_content, "Also log each request's messages or prompt and its output text");
  command->add_option("--metrics-compat", o->metrics_compat,
                      "Also export the metrics vLLM has under its names (vllm:num_requests_waiting, vllm:kv_cache_usage_perc, "
                      "vllm:lora_requests_info, ...), for Kubernetes inference gateways")
      ->check(CLI::IsMember({"vllm"}));
  command->add_option("--traces", o->traces,
                      "Keep the timelines of the last N requests for GET /admin/requests/{id} and the console (default 4096; 0: off)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  command->add_option("--otlp-endpoint", o->otlp_endpoint,
                      "Send each request's spans to this OpenTelemetry collector (OTLP over HTTP, e.g. http://127.0.0.1:4318)");
  command->add_option("--otlp-service-name", o->otlp_service_name, "The service.name of the exported spans (default tern)");
  command->add_option("--kv-events-endpoint", o->kv_events_endpoint,
                      "Publish KV-cache events (llm-d's format: ZeroMQ, msgpack) to this indexer endpoint, e.g. tcp://127.0.0.1:5557");
  command->add_option("--kv-events-pod", o->kv_events_pod, "This server's identity in the KV-event topic kv@POD@MODEL (default: the host name)");
  command->add_option("--kv-events-hash-seed", o->kv_events_hash_seed, "The hash seed the indexer uses (vLLM's PYTHONHASHSEED; default empty)");
  command->add_option("--console", o->console, "The web console at /console and its figures (default on)")->check(CLI::IsMember({"on", "off"}));
  command->add_option("--ledger-retention-days", o->ledger_retention_days, "Delete ledger rows older than this (0: keep everything)")
      ->check(CLI::Range(int64_t{0}, int64_t{36500}));
  command->add_option("--budget-alert", o->budget_alert, "Share of a key's budget past which tern:key_budget_alert is 1")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  command->add_flag("--insecure-no-auth", o->insecure_no_auth, "Listen on a non-loopback address although no API key exists");
  command->add_option("--tls-cert", o->tls_cert, "Serve HTTPS: certificate chain (PEM)");
  command->add_option("--tls-key", o->tls_key, "Serve HTTPS: private key (PEM)");
  command->add_option("--max-body-bytes", o->server.max_body_bytes, "Largest request body")->capture_default_str();
  command->add_option("--drain-timeout", o->drain_timeout_s, "Seconds in-flight requests may finish after SIGTERM")->capture_default_str()->check(CLI::Range(0.0, 86400.0));
  command->add_option("--read-timeout", o->read_timeout_s, "Seconds a client has to send a whole request")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  command->add_option("--write-timeout", o->write_timeout_s, "Seconds one write may wait on a client that stopped reading")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  return [o, model, host, port]() {
    o->model_given = model->count() > 0;
    o->host_given = host->count() > 0;
    o->port_given = port->count() > 0;
    return serve(*o);
  };
}

}  // namespace tern::cli
