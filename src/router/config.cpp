#include "router/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "util/units.h"

namespace tern::router {
namespace {

/// Walks the YAML tree keeping the path of keys ("deployments[0].prices.input") for messages.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  template <typename... Args>
  std::unexpected<Error> error(const YAML::Node& node, const std::string& key, fmt::format_string<Args...> format, Args&&... args) const {
    return std::unexpected(Error{fmt::format("{}: {}", where(node, key), fmt::format(format, std::forward<Args>(args)...))});
  }

  /// "file:line:column: key", how messages name a place in the file.
  std::string where(const YAML::Node& node, const std::string& key) const {
    const YAML::Mark mark = node.Mark();
    return fmt::format("{}: {}", mark.line >= 0 ? fmt::format("{}:{}:{}", file_, mark.line + 1, mark.column + 1) : file_, key);
  }

  /// Refuses keys not in `known` (a typo must not silently become a default).
  Result<void> only_keys(const YAML::Node& map, const std::string& at, const std::set<std::string>& known) const {
    if (!map.IsMap()) return error(map, at.empty() ? "(top level)" : at, "must be a mapping of keys");
    for (const auto& item : map) {
      const std::string key = item.first.as<std::string>();
      if (!known.contains(key)) {
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        return error(item.first, join(at, key), "unknown key (known: {})", list);
      }
    }
    return {};
  }

  Result<std::string> string(const YAML::Node& map, const std::string& at, const char* key, bool required, std::string fallback = {}) const {
    const YAML::Node node = map[key];
    if (!node) {
      if (required) return error(map, join(at, key), "required");
      return fallback;
    }
    if (!node.IsScalar() || node.Tag() == "tag:yaml.org,2002:null") return error(node, join(at, key), "must be a string");
    return node.as<std::string>();
  }

  /// One of a few named values: the key's string (or `fallback`) through `parse` (which returns an
  /// optional or a Result); anything else is an error that lists `choices`.
  template <class Parse>
  auto choice(const YAML::Node& map, const std::string& at, const char* key, const char* fallback, const char* choices,
              Parse parse) const -> Result<std::remove_cvref_t<decltype(*parse(std::string()))>> {
    auto text = string(map, at, key, false, fallback);
    if (!text) return std::unexpected(text.error());
    if (auto value = parse(*text)) return *value;
    return error(map[key], join(at, key), "must be {} (got \"{}\")", choices, *text);
  }

  Result<double> number(const YAML::Node& map, const std::string& at, const char* key, double lo, double hi, double fallback) const {
    const YAML::Node node = map[key];
    if (!node) return fallback;
    double value = 0;
    if (!node.IsScalar() || !YAML::convert<double>::decode(node, value)) return error(node, join(at, key), "must be a number");
    if (!(value >= lo && value <= hi)) return error(node, join(at, key), "must be from {} to {} (got {})", lo, hi, value);
    return value;
  }

  Result<int64_t> integer(const YAML::Node& map, const std::string& at, const char* key, int64_t lo, int64_t hi, int64_t fallback) const {
    const YAML::Node node = map[key];
    if (!node) return fallback;
    int64_t value = 0;
    if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, value)) return error(node, join(at, key), "must be an integer");
    if (value < lo || value > hi) return error(node, join(at, key), "must be from {} to {} (got {})", lo, hi, value);
    return value;
  }

  Result<bool> boolean(const YAML::Node& map, const std::string& at, const char* key, bool fallback) const {
    const YAML::Node node = map[key];
    if (!node) return fallback;
    bool value = false;
    if (!node.IsScalar() || !YAML::convert<bool>::decode(node, value)) return error(node, join(at, key), "must be true or false");
    return value;
  }

  /// "30s", "500ms", "2m" or a plain number of seconds.
  Result<double> seconds(const YAML::Node& map, const std::string& at, const char* key, double fallback) const {
    const YAML::Node node = map[key];
    if (!node) return fallback;
    if (!node.IsScalar()) return error(node, join(at, key), "must be a duration such as 30s or 500ms");
    auto parsed = parse_seconds(node.as<std::string>());
    if (!parsed) return error(node, join(at, key), "{}", parsed.error().message);
    return *parsed;
  }

  /// "2G", "512M" or a plain number of bytes.
  Result<int64_t> bytes(const YAML::Node& map, const std::string& at, const char* key) const {
    const YAML::Node node = map[key];
    if (!node) return int64_t{0};
    if (!node.IsScalar()) return error(node, join(at, key), "must be a size such as 512M or 2G");
    auto parsed = parse_bytes(node.as<std::string>());
    if (!parsed) return error(node, join(at, key), "{}", parsed.error().message);
    return *parsed;
  }

  Result<std::vector<std::string>> strings(const YAML::Node& map, const std::string& at, const char* key) const {
    std::vector<std::string> out;
    const YAML::Node node = map[key];
    if (!node) return out;
    if (!node.IsSequence()) return error(node, join(at, key), "must be a list of strings");
    for (const auto& item : node) {
      if (!item.IsScalar()) return error(item, join(at, key), "must be a list of strings");
      out.push_back(item.as<std::string>());
    }
    return out;
  }

  /// A mapping of string keys to string values (labels).
  Result<std::map<std::string, std::string>> string_map(const YAML::Node& map, const std::string& at, const char* key) const {
    std::map<std::string, std::string> out;
    const YAML::Node node = map[key];
    if (!node) return out;
    if (!node.IsMap()) return error(node, join(at, key), "must be a mapping of names to values (region: eu-west)");
    for (const auto& item : node) {
      if (!item.second.IsScalar() || item.second.Tag() == "tag:yaml.org,2002:null") {
        return error(item.second, join(join(at, key), item.first.as<std::string>()), "must be a string");
      }
      out[item.first.as<std::string>()] = item.second.as<std::string>();
    }
    return out;
  }

  static std::string join(const std::string& at, const std::string& key) { return at.empty() ? key : at + "." + key; }

 private:
  std::string file_;
};

#define TRY_ASSIGN(target, expression)            \
  do {                                            \
    auto result_ = (expression);                  \
    if (!result_) return std::unexpected(result_.error()); \
    target = std::move(*result_);                 \
  } while (0)

Result<Prices> read_prices(const Reader& r, const YAML::Node& entry, const std::string& at) {
  Prices prices;
  const YAML::Node node = entry["prices"];
  if (!node) return prices;
  const std::string here = Reader::join(at, "prices");
  if (auto ok = r.only_keys(node, here, {"input", "cached_input", "cache_write", "cache_write_1h", "output"}); !ok) return std::unexpected(ok.error());
  TRY_ASSIGN(prices.input, r.number(node, here, "input", 0, 1e6, 0));
  TRY_ASSIGN(prices.cached_input, r.number(node, here, "cached_input", 0, 1e6, 0));
  TRY_ASSIGN(prices.cache_write, r.number(node, here, "cache_write", 0, 1e6, 0));
  TRY_ASSIGN(prices.cache_write_1h, r.number(node, here, "cache_write_1h", 0, 1e6, 0));
  TRY_ASSIGN(prices.output, r.number(node, here, "output", 0, 1e6, 0));
  return prices;
}

Result<DeploymentConfig> read_deployment(const Reader& r, const YAML::Node& entry, const std::string& at, const std::string& name,
                                         const std::string& kind, int default_retries) {
  DeploymentConfig d;
  d.name = name;
  d.kind = kind;
  TRY_ASSIGN(d.prices, read_prices(r, entry, at));
  TRY_ASSIGN(d.max_concurrency, r.integer(entry, at, "max_concurrency", 0, 1 << 20, 0));
  int64_t retries = 0;
  TRY_ASSIGN(retries, r.integer(entry, at, "retries", 0, 10, default_retries));
  d.retries = static_cast<int>(retries);
  if (const YAML::Node breaker = entry["breaker"]; breaker) {
    const std::string here = Reader::join(at, "breaker");
    if (auto ok = r.only_keys(breaker, here, {"failures", "window", "open_for"}); !ok) return std::unexpected(ok.error());
    int64_t failures = 0;
    double window = 0, open_for = 0;
    TRY_ASSIGN(failures, r.integer(breaker, here, "failures", 1, 1000, d.breaker.failures_to_open));
    TRY_ASSIGN(window, r.seconds(breaker, here, "window", 30));
    TRY_ASSIGN(open_for, r.seconds(breaker, here, "open_for", 10));
    d.breaker.failures_to_open = static_cast<int>(failures);
    d.breaker.window = std::chrono::milliseconds(static_cast<int64_t>(window * 1000));
    d.breaker.open_for = std::chrono::milliseconds(static_cast<int64_t>(open_for * 1000));
  }
  TRY_ASSIGN(d.labels, r.string_map(entry, at, "labels"));
  return d;
}

/// A placement policy: {regions: [...], labels: {k: v}, never_remote: bool}.
Result<wire::PlacementPolicy> read_placement(const Reader& r, const YAML::Node& entry, const std::string& at, std::string owner) {
  if (auto ok = r.only_keys(entry, at, {"regions", "labels", "never_remote"}); !ok) return std::unexpected(ok.error());
  wire::PlacementPolicy policy;
  policy.owner = std::move(owner);
  TRY_ASSIGN(policy.regions, r.strings(entry, at, "regions"));
  std::map<std::string, std::string> labels;
  TRY_ASSIGN(labels, r.string_map(entry, at, "labels"));
  policy.labels.assign(labels.begin(), labels.end());
  TRY_ASSIGN(policy.never_remote, r.boolean(entry, at, "never_remote", false));
  return policy;
}

Result<Policy> read_policy(const Reader& r, const YAML::Node& entry, const std::string& at) {
  std::string name;
  TRY_ASSIGN(name, r.string(entry, at, "policy", false, "price"));
  for (Policy p : {Policy::kPrice, Policy::kLatency, Policy::kLeastOutstanding, Policy::kPrefixAffinity, Policy::kRandom, Policy::kKvEvents}) {
    if (policy_name(p) == name) return p;
  }
  return r.error(entry["policy"], Reader::join(at, "policy"), "must be one of price, latency, least-outstanding, prefix-affinity, random, kv-events (got \"{}\")", name);
}

/// `speculate:` of a local model: a method name, or {method, max_draft, min_draft, ngram_min, ngram_max,
/// draft_model, opt_in} (a draft_model alone means method draft).
Result<engine::SpeculationConfig> read_speculation(const Reader& r, const YAML::Node& node, const std::string& at) {
  engine::SpeculationConfig out;
  if (node.IsScalar()) {
    auto method = engine::parse_speculation_method(node.as<std::string>());
    if (!method) return r.error(node, at, "{}", method.error().message);
    out.method = *method;
    if (auto ok = out.validate(); !ok) return r.error(node, at, "{}: give {{method: draft, draft_model: FILE}}", ok.error().message);
    return out;
  }
  if (!node.IsMap()) {
    return r.error(node, at, "must be a method (off, ngram, draft) or a map {{method, max_draft, min_draft, ngram_min, ngram_max, draft_model, opt_in}}");
  }
  if (auto ok = r.only_keys(node, at, {"method", "max_draft", "min_draft", "ngram_min", "ngram_max", "draft_model", "opt_in"}); !ok) {
    return std::unexpected(ok.error());
  }
  TRY_ASSIGN(out.draft_model, r.string(node, at, "draft_model", false));
  TRY_ASSIGN(out.method, r.choice(node, at, "method", out.draft_model.empty() ? "ngram" : "draft", "off, ngram or draft",
                                  engine::parse_speculation_method));
  int64_t value = 0;
  TRY_ASSIGN(value, r.integer(node, at, "max_draft", 1, 64, out.max_draft));
  out.max_draft = static_cast<int32_t>(value);
  TRY_ASSIGN(value, r.integer(node, at, "min_draft", 0, 64, out.min_draft));
  out.min_draft = static_cast<int32_t>(value);
  TRY_ASSIGN(value, r.integer(node, at, "ngram_min", 1, 64, out.ngram_min));
  out.ngram_min = static_cast<int32_t>(value);
  TRY_ASSIGN(value, r.integer(node, at, "ngram_max", 1, 64, out.ngram_max));
  out.ngram_max = static_cast<int32_t>(value);
  bool opt_in = false;
  TRY_ASSIGN(opt_in, r.boolean(node, at, "opt_in", false));
  out.is_default_on = !opt_in;
  if (auto ok = out.validate(); !ok) return r.error(node, at, "{}", ok.error().message);
  return out;
}

Result<LocalModelEntry> read_local(const Reader& r, const YAML::Node& entry, const std::string& at) {
  if (auto ok = r.only_keys(entry, at, {"name", "model", "chat_template", "threads", "context", "kv_cache_memory", "max_batch_tokens",
                                        "itl_target", "max_prefill_wait", "prefill_order", "max_running", "max_waiting", "prefix_caching", "kv_pin_fraction",
                                        "kv_pin_quota", "kv_disk_cache", "kv_disk_bytes", "preload",
                                        "idle_unload", "prices", "max_concurrency", "retries", "breaker", "aliases", "loras", "max_loras",
                                        "max_lora_rank", "lora_dtype", "speculate", "labels"});
      !ok) {
    return std::unexpected(ok.error());
  }
  LocalModelEntry out;
  LocalModelConfig& m = out.model;
  TRY_ASSIGN(m.model, r.string(entry, at, "model", true));
  out.model_where = r.where(entry["model"], Reader::join(at, "model"));
  TRY_ASSIGN(m.name, r.string(entry, at, "name", false, m.model));
  TRY_ASSIGN(m.chat_template, r.string(entry, at, "chat_template", false));
  int64_t threads = 0;
  TRY_ASSIGN(threads, r.integer(entry, at, "threads", 0, 1024, 0));
  m.threads = static_cast<int>(threads);
  TRY_ASSIGN(m.context, r.integer(entry, at, "context", 0, int64_t{1} << 22, 0));
  if (m.context != 0 && m.context < 16) return r.error(entry["context"], Reader::join(at, "context"), "must be at least 16 tokens");
  TRY_ASSIGN(m.kv_cache_memory, r.bytes(entry, at, "kv_cache_memory"));
  TRY_ASSIGN(m.scheduler.max_batch_tokens, r.integer(entry, at, "max_batch_tokens", 1, 1 << 16, 512));
  if (const YAML::Node itl = entry["itl_target"]) {
    if (!itl.IsScalar()) return r.error(itl, Reader::join(at, "itl_target"), "must be a duration such as 100ms, or a multiple such as 1.4x");
    if (auto ok = engine::parse_itl_target(itl.as<std::string>(), m.scheduler); !ok) {
      return r.error(itl, Reader::join(at, "itl_target"), "{}", ok.error().message);
    }
  } else if (auto ok = engine::parse_itl_target(engine::kDefaultItlTarget, m.scheduler); !ok) {
    return std::unexpected(ok.error());
  }
  TRY_ASSIGN(m.scheduler.max_prefill_wait_s, r.seconds(entry, at, "max_prefill_wait", 2.0));
  TRY_ASSIGN(m.scheduler.prefill_order, r.choice(entry, at, "prefill_order", "fcfs", "fcfs or shortest", engine::parse_prefill_order));
  TRY_ASSIGN(m.scheduler.max_running, r.integer(entry, at, "max_running", 1, 1 << 16, 64));
  TRY_ASSIGN(m.max_waiting, r.integer(entry, at, "max_waiting", 0, 1 << 20, 4096));
  TRY_ASSIGN(m.prefix_caching, r.boolean(entry, at, "prefix_caching", true));
  TRY_ASSIGN(m.kv_pin_fraction, r.number(entry, at, "kv_pin_fraction", 0, 1, 0.5));
  TRY_ASSIGN(m.kv_pin_quota, r.bytes(entry, at, "kv_pin_quota"));
  TRY_ASSIGN(m.kv_disk_cache, r.string(entry, at, "kv_disk_cache", false));
  if (entry["kv_disk_bytes"]) TRY_ASSIGN(m.kv_disk_bytes, r.bytes(entry, at, "kv_disk_bytes"));
  TRY_ASSIGN(m.preload, r.boolean(entry, at, "preload", true));
  TRY_ASSIGN(m.idle_unload_s, r.seconds(entry, at, "idle_unload", 0));
  TRY_ASSIGN(out.deployment, read_deployment(r, entry, at, m.name, "local", 0));
  TRY_ASSIGN(out.aliases, r.strings(entry, at, "aliases"));
  TRY_ASSIGN(m.max_loras, r.integer(entry, at, "max_loras", 1, 1 << 16, 64));
  TRY_ASSIGN(m.max_lora_rank, r.integer(entry, at, "max_lora_rank", 1, 1 << 12, 64));
  TRY_ASSIGN(m.lora_dtype, r.choice(entry, at, "lora_dtype", "f16", "q8 or f16", model::parse_lora_weight_type));
  if (const YAML::Node spec = entry["speculate"]) {
    TRY_ASSIGN(m.speculation, read_speculation(r, spec, Reader::join(at, "speculate")));
  }
  if (const YAML::Node loras = entry["loras"]) {
    if (!loras.IsSequence()) return r.error(loras, Reader::join(at, "loras"), "must be a list of {{name, path, scale}}");
    for (size_t i = 0; i < loras.size(); ++i) {
      const std::string lat = fmt::format("{}.loras[{}]", at, i);
      if (auto ok = r.only_keys(loras[i], lat, {"name", "path", "scale"}); !ok) return std::unexpected(ok.error());
      engine::AdapterSpec spec;
      TRY_ASSIGN(spec.name, r.string(loras[i], lat, "name", true));
      TRY_ASSIGN(spec.path, r.string(loras[i], lat, "path", true));
      double scale = 1;
      TRY_ASSIGN(scale, r.number(loras[i], lat, "scale", -100, 100, 1));
      spec.scale = static_cast<float>(scale);
      if (auto ok = engine::check_adapter_name(spec.name); !ok) return r.error(loras[i]["name"], Reader::join(lat, "name"), "{}", ok.error().message);
      m.loras.push_back(std::move(spec));
    }
  }
  return out;
}

Result<RemoteEntry> read_remote(const Reader& r, const YAML::Node& entry, const std::string& at) {
  if (auto ok = r.only_keys(entry, at, {"name", "kind", "base_url", "api_key_env", "model", "prices", "max_concurrency", "retries",
                                        "breaker", "timeout", "first_byte_timeout", "default_max_tokens", "max_connections", "health_check",
                                        "ca_file", "labels", "kv_events_pod"});
      !ok) {
    return std::unexpected(ok.error());
  }
  RemoteEntry out;
  RemoteConfig& c = out.remote;
  TRY_ASSIGN(c.name, r.string(entry, at, "name", true));
  std::string kind;
  TRY_ASSIGN(kind, r.string(entry, at, "kind", false, "openai"));
  if (kind != "openai" && kind != "anthropic") {
    return r.error(entry["kind"], Reader::join(at, "kind"), "must be one of openai, anthropic (got \"{}\")", kind);
  }
  c.kind = kind == "anthropic" ? RemoteKind::kAnthropic : RemoteKind::kOpenAi;
  TRY_ASSIGN(c.base_url, r.string(entry, at, "base_url", true));
  TRY_ASSIGN(c.upstream_model, r.string(entry, at, "model", true));
  TRY_ASSIGN(out.api_key_env, r.string(entry, at, "api_key_env", false));
  TRY_ASSIGN(c.ca_file, r.string(entry, at, "ca_file", false));
  if (!c.ca_file.empty() && !c.base_url.starts_with("https://")) {
    return r.error(entry["ca_file"], Reader::join(at, "ca_file"), "only applies to an https:// base_url");
  }
  if (!out.api_key_env.empty()) {
    const char* value = std::getenv(out.api_key_env.c_str());
    if (value == nullptr || *value == '\0') {
      return r.error(entry["api_key_env"], Reader::join(at, "api_key_env"), "the environment variable {} is not set", out.api_key_env);
    }
    c.api_key = value;
  }
  double timeout = 0, first_byte = 0;
  TRY_ASSIGN(timeout, r.seconds(entry, at, "timeout", 600));
  TRY_ASSIGN(first_byte, r.seconds(entry, at, "first_byte_timeout", 30));
  c.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  c.first_byte_timeout = std::chrono::milliseconds(static_cast<int64_t>(first_byte * 1000));
  TRY_ASSIGN(c.default_max_tokens, r.integer(entry, at, "default_max_tokens", 1, 1 << 24, 4096));
  int64_t connections = 0;
  TRY_ASSIGN(connections, r.integer(entry, at, "max_connections", 1, 100000, 64));
  c.max_connections = static_cast<size_t>(connections);
  if (const YAML::Node health = entry["health_check"]; health) {
    const std::string here = Reader::join(at, "health_check");
    if (auto ok = r.only_keys(health, here, {"path", "interval"}); !ok) return std::unexpected(ok.error());
    TRY_ASSIGN(c.health_path, r.string(health, here, "path", false, "/ready"));
    if (!c.health_path.starts_with("/")) return r.error(health["path"], Reader::join(here, "path"), "must start with /");
    double interval = 0;
    TRY_ASSIGN(interval, r.seconds(health, here, "interval", 5));
    if (interval < 0.1) return r.error(health["interval"], Reader::join(here, "interval"), "must be at least 100ms");
    c.health_interval = std::chrono::milliseconds(static_cast<int64_t>(interval * 1000));
  }
  TRY_ASSIGN(out.deployment, read_deployment(r, entry, at, c.name, kind, 1));
  // The replica's --kv-events-pod (default: this deployment's name); its events' topic names the model.
  std::string pod;
  TRY_ASSIGN(pod, r.string(entry, at, "kv_events_pod", false, c.name));
  out.deployment.kv_source = pod + "@" + c.upstream_model;
  return out;
}

}  // namespace

Result<GatewayConfig> parse_gateway_config(const std::string& text, const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return fail("{}:{}:{}: not valid YAML: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  const Reader r(path);
  GatewayConfig out;
  out.path = path;
  if (!root || root.IsNull()) return fail("{}: the file is empty", path);
  try {
    if (auto ok = r.only_keys(root, "", {"server", "models", "deployments", "routes", "memory_budget", "ledger",
                                                "ledger_retention_days", "keys_db", "request_log", "tracing", "console",
                                                "metrics_compat", "policies", "kv_events"});
        !ok) {
      return std::unexpected(ok.error());
    }
    TRY_ASSIGN(out.memory_budget_bytes, r.bytes(root, "", "memory_budget"));
    TRY_ASSIGN(out.ledger, r.string(root, "", "ledger", false));
    TRY_ASSIGN(out.ledger_retention_days, r.integer(root, "", "ledger_retention_days", 0, 36500, -1));
    TRY_ASSIGN(out.keys_db, r.string(root, "", "keys_db", false));
    if (const YAML::Node log = root["request_log"]; log) {
      if (log.IsScalar()) {
        TRY_ASSIGN(out.request_log, r.string(root, "", "request_log", true));
      } else {
        if (auto ok = r.only_keys(log, "request_log", {"path", "max_bytes", "keep", "content"}); !ok) return std::unexpected(ok.error());
        TRY_ASSIGN(out.request_log, r.string(log, "request_log", "path", true));
        TRY_ASSIGN(out.request_log_max_bytes, r.bytes(log, "request_log", "max_bytes"));
        int64_t keep = -1;
        TRY_ASSIGN(keep, r.integer(log, "request_log", "keep", 0, 1000, -1));
        out.request_log_keep = static_cast<int>(keep);
        TRY_ASSIGN(out.request_log_content, r.boolean(log, "request_log", "content", false));
      }
    }
    if (const YAML::Node tracing = root["tracing"]; tracing) {
      if (auto ok = r.only_keys(tracing, "tracing", {"keep", "otlp_endpoint", "service_name"}); !ok) return std::unexpected(ok.error());
      TRY_ASSIGN(out.traces_keep, r.integer(tracing, "tracing", "keep", 0, 1000000, -1));
      TRY_ASSIGN(out.otlp_endpoint, r.string(tracing, "tracing", "otlp_endpoint", false));
      TRY_ASSIGN(out.otlp_service_name, r.string(tracing, "tracing", "service_name", false));
    }
    if (const YAML::Node policies = root["policies"]; policies) {
      if (auto ok = r.only_keys(policies, "policies", {"orgs", "keys"}); !ok) return std::unexpected(ok.error());
      for (const char* kind : {"orgs", "keys"}) {
        const YAML::Node owners = policies[kind];
        if (!owners) continue;
        const std::string here = Reader::join("policies", kind);
        if (!owners.IsMap()) return r.error(owners, here, "must be a mapping of {} to policies", kind);
        for (const auto& item : owners) {
          const std::string name = item.first.as<std::string>();
          const bool is_org = std::string_view(kind) == "orgs";
          wire::PlacementPolicy policy;
          TRY_ASSIGN(policy, read_placement(r, item.second, Reader::join(here, name), (is_org ? "org " : "key ") + name));
          (is_org ? out.org_policies : out.key_policies)[name] = std::move(policy);
        }
      }
    }
    if (const YAML::Node events = root["kv_events"]; events) {
      if (auto ok = r.only_keys(events, "kv_events", {"endpoint", "pod", "hash_seed", "listen"}); !ok) return std::unexpected(ok.error());
      TRY_ASSIGN(out.kv_events_endpoint, r.string(events, "kv_events", "endpoint", false));
      TRY_ASSIGN(out.kv_events_listen, r.string(events, "kv_events", "listen", false));
      if (out.kv_events_endpoint.empty() && out.kv_events_listen.empty()) {
        return r.error(events, "kv_events", "needs endpoint (publish this server's events) or listen (receive its replicas'), or both");
      }
      TRY_ASSIGN(out.kv_events_pod, r.string(events, "kv_events", "pod", false));
      TRY_ASSIGN(out.kv_events_hash_seed, r.string(events, "kv_events", "hash_seed", false));
    }
    if (root["console"]) {
      bool console = true;
      TRY_ASSIGN(console, r.boolean(root, "", "console", true));
      out.console = console;
    }
    TRY_ASSIGN(out.metrics_compat, r.string(root, "", "metrics_compat", false));
    if (!out.metrics_compat.empty() && out.metrics_compat != "vllm") {
      return fail("{}: metrics_compat: expected \"vllm\" (got \"{}\")", path, out.metrics_compat);
    }
    if (const YAML::Node server = root["server"]; server) {
      if (auto ok = r.only_keys(server, "server", {"host", "port"}); !ok) return std::unexpected(ok.error());
      TRY_ASSIGN(out.host, r.string(server, "server", "host", false));
      int64_t port = -1;
      TRY_ASSIGN(port, r.integer(server, "server", "port", 0, 65535, -1));
      out.port = static_cast<int>(port);
    }
    std::set<std::string> names;
    auto claim = [&](const YAML::Node& node, const std::string& at, const std::string& name) -> Result<void> {
      if (name.empty()) return r.error(node, at, "must not be empty");
      if (!names.insert(name).second) return r.error(node, at, "the name \"{}\" is used twice (models, deployments and routes share one namespace)", name);
      return {};
    };
    auto sequence = [&](const char* key) -> Result<YAML::Node> {
      YAML::Node node = root[key];
      if (node && !node.IsSequence()) return r.error(node, key, "must be a list");
      return node;
    };
    YAML::Node models, deployments, routes;
    TRY_ASSIGN(models, sequence("models"));
    TRY_ASSIGN(deployments, sequence("deployments"));
    TRY_ASSIGN(routes, sequence("routes"));
    for (size_t i = 0; models && i < models.size(); ++i) {
      const std::string at = fmt::format("models[{}]", i);
      LocalModelEntry entry;
      TRY_ASSIGN(entry, read_local(r, models[i], at));
      if (auto ok = claim(models[i], at + ".name", entry.model.name); !ok) return std::unexpected(ok.error());
      for (const auto& alias : entry.aliases) {
        if (auto ok = claim(models[i]["aliases"], at + ".aliases", alias); !ok) return std::unexpected(ok.error());
      }
      for (size_t j = 0; j < entry.model.loras.size(); ++j) {
        if (auto ok = claim(models[i]["loras"][j], fmt::format("{}.loras[{}].name", at, j), entry.model.loras[j].name); !ok) {
          return std::unexpected(ok.error());
        }
      }
      out.local.push_back(std::move(entry));
    }
    for (size_t i = 0; deployments && i < deployments.size(); ++i) {
      const std::string at = fmt::format("deployments[{}]", i);
      RemoteEntry entry;
      TRY_ASSIGN(entry, read_remote(r, deployments[i], at));
      if (auto ok = claim(deployments[i], at + ".name", entry.remote.name); !ok) return std::unexpected(ok.error());
      out.remote.push_back(std::move(entry));
    }
    std::set<std::string> deployment_names;
    for (const auto& l : out.local) deployment_names.insert(l.model.name);
    for (const auto& d : out.remote) deployment_names.insert(d.remote.name);
    for (size_t i = 0; routes && i < routes.size(); ++i) {
      const std::string at = fmt::format("routes[{}]", i);
      const YAML::Node entry = routes[i];
      if (auto ok = r.only_keys(entry, at, {"name", "deployments", "policy", "aliases", "tokenizer", "chat_template", "decode_token_cost"}); !ok) {
        return std::unexpected(ok.error());
      }
      RouteEntry route;
      TRY_ASSIGN(route.name, r.string(entry, at, "name", true));
      if (auto ok = claim(entry, at + ".name", route.name); !ok) return std::unexpected(ok.error());
      TRY_ASSIGN(route.deployments, r.strings(entry, at, "deployments"));
      if (route.deployments.empty()) return r.error(entry, at + ".deployments", "required: the models or deployments this name routes to");
      for (const auto& d : route.deployments) {
        if (!deployment_names.contains(d)) {
          return r.error(entry["deployments"], at + ".deployments", "\"{}\" is not a model or deployment defined in this file", d);
        }
      }
      TRY_ASSIGN(route.policy, read_policy(r, entry, at));
      TRY_ASSIGN(route.tokenizer, r.string(entry, at, "tokenizer", false));
      TRY_ASSIGN(route.chat_template, r.string(entry, at, "chat_template", false));
      TRY_ASSIGN(route.decode_token_cost, r.number(entry, at, "decode_token_cost", 0, 1e4, kDefaultDecodeTokenCost));
      if (route.policy == Policy::kKvEvents) {
        // The prompt must be tokenized as the replicas tokenize it, and their events must arrive.
        if (route.tokenizer.empty()) {
          return r.error(entry, at + ".tokenizer", "required with policy kv-events: the replicas' model (alias or .gguf), whose tokenizer and chat template turn a request into the tokens they cache");
        }
        if (out.kv_events_listen.empty()) {
          return r.error(entry["policy"], at + ".policy", "kv-events needs `kv_events: {{listen: tcp://HOST:PORT}}`, where the replicas' --kv-events-endpoint points");
        }
      } else {
        for (const char* key : {"tokenizer", "chat_template", "decode_token_cost"}) {
          if (entry[key]) return r.error(entry[key], at + "." + key, "only used by policy kv-events");
        }
      }
      TRY_ASSIGN(route.aliases, r.strings(entry, at, "aliases"));
      for (const auto& alias : route.aliases) {
        if (auto ok = claim(entry["aliases"], at + ".aliases", alias); !ok) return std::unexpected(ok.error());
      }
      out.routes.push_back(std::move(route));
    }
    if (out.local.empty() && out.remote.empty()) return fail("{}: nothing to serve: add a local model under `models:` or a remote one under `deployments:`", path);
  } catch (const YAML::Exception& e) {  // a conversion yaml-cpp refuses; the mark says where
    return fail("{}:{}:{}: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg);
  }
  return out;
}

Result<GatewayConfig> load_gateway_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail("cannot read the config file {}", path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_gateway_config(text.str(), path);
}

}  // namespace tern::router
