#pragma once
// `tern serve --config tern.yaml`: the models this server answers for and where they run (local
// engines, remote OpenAI- or Anthropic-compatible deployments), how each public name routes, and
// prices. Every key is documented, with an example, in docs/gateway.md. A bad file is refused at
// start with the file, line and key in the message:
//
//   tern.yaml:14:5: deployments[0].kind: must be one of openai, anthropic (got "azure")

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "router/local_model.h"
#include "router/remote_provider.h"
#include "router/router.h"
#include "util/result.h"

namespace tern::router {

struct LocalModelEntry {
  LocalModelConfig model;
  std::string model_where;  ///< "tern.yaml:3:12: models[0].model" (or "-m"): where start-up errors point
  DeploymentConfig deployment;  ///< prices, concurrency, breaker
  std::vector<std::string> aliases;
};

struct RemoteEntry {
  RemoteConfig remote;
  DeploymentConfig deployment;
  std::string api_key_env;  ///< where remote.api_key came from (for messages)
};

struct RouteEntry {
  std::string name;
  std::vector<std::string> deployments;
  Policy policy = Policy::kPrice;
  std::vector<std::string> aliases;
  std::string tokenizer;      ///< kv-events: the replicas' model (alias or .gguf) whose tokenizer and template encode prompts
  std::string chat_template;  ///< kv-events: a Jinja file replacing that model's template (as the replicas' --chat-template)
  double decode_token_cost = kDefaultDecodeTokenCost;  ///< kv-events: an output token's work in prompt tokens of prefill
};

struct GatewayConfig {
  std::string path;  ///< the file it came from
  std::vector<LocalModelEntry> local;
  std::vector<RemoteEntry> remote;
  std::vector<RouteEntry> routes;   ///< every local model and remote deployment is also a route of its own name
  int64_t memory_budget_bytes = 0;  ///< 0: no budget
  // Tenants and metering — flags on the command line win over these.
  std::string ledger;                  ///< a SQLite path or postgresql:// URL; empty: the default
  int64_t ledger_retention_days = -1;  ///< -1: not set; 0: keep everything
  std::string keys_db;                 ///< empty: $TERN_HOME/keys.db
  // `request_log:` — a file, or {path, max_bytes, keep, content}; flags win over these.
  std::string request_log;            ///< empty: none
  int64_t request_log_max_bytes = 0;  ///< 0: not set
  int request_log_keep = -1;          ///< -1: not set
  bool request_log_content = false;
  // `tracing: {keep, otlp_endpoint, service_name}`, `console: true|false`, `metrics_compat: vllm`.
  int64_t traces_keep = -1;   ///< -1: not set
  std::string otlp_endpoint;  ///< empty: not set
  std::string otlp_service_name;
  std::optional<bool> console;
  std::string metrics_compat;  ///< "" or "vllm"
  // `policies: {orgs: {NAME: POLICY}, keys: {ID-or-NAME: POLICY}}`: where each tenant's requests may run.
  std::map<std::string, wire::PlacementPolicy> org_policies, key_policies;
  // `kv_events: {endpoint, pod, hash_seed}`: KV-cache events of every local model (observe/kv_events.h);
  // `listen`: where this gateway receives its replicas' events (observe/kv_block_index.h, policy kv-events).
  std::string kv_events_endpoint, kv_events_pod, kv_events_hash_seed, kv_events_listen;
  // `server:` — flags on the command line win over these.
  std::string host;
  int port = -1;  ///< -1: not set
};

/// Reads and validates a config file; API keys are read from the environment variables it names.
Result<GatewayConfig> load_gateway_config(const std::string& path);
/// The same from text (tests); `path` only names it in messages.
Result<GatewayConfig> parse_gateway_config(const std::string& text, const std::string& path);

}  // namespace tern::router
