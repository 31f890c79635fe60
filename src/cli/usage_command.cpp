// `tern usage`: spend from the ledger as a table (or JSON), the same totals GET /admin/usage gives.

#include <cstdio>
#include <memory>
#include <string>

#include "api/admin.h"
#include "cli/commands.h"
#include "metering/ledger.h"

namespace tern::cli {

Runner add_usage_command(CLI::App& app) {
  auto* command = app.add_subcommand("usage", "Spend and tokens from the ledger, grouped by key, org, model, deployment or day");
  struct Options {
    std::string ledger, from, to, group_by = "model", key;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  command->add_option("--ledger", o->ledger, "SQLite file or postgresql:// URL (default $TERN_HOME/ledger.db)");
  command->add_option("--from", o->from, "Start: 2026-11-01, 2026-11-01T12:00:00Z or Unix seconds (default: start of this month)");
  command->add_option("--to", o->to, "End, exclusive (default: now)");
  command->add_option("--group-by", o->group_by, "key, org, model, deployment, day or none")->capture_default_str();
  command->add_option("--key", o->key, "Only this key id");
  command->add_flag("--json", o->json, "Print JSON, as GET /admin/usage");
  return [o]() -> int {
    auto query = api::usage_query(o->from, o->to, o->group_by);
    if (!query) return std::fprintf(stderr, "error: %s\n", query.error().message.c_str()), 2;
    query->key_id = o->key;
    auto store = metering::open_ledger(o->ledger.empty() ? metering::default_ledger_path() : o->ledger);
    if (!store) return std::fprintf(stderr, "error: %s\n", store.error().message.c_str()), 1;
    auto totals = (*store)->usage(*query);
    if (!totals) return std::fprintf(stderr, "error: %s\n", totals.error().message.c_str()), 1;
    const auto out = api::usage_json(*query, *totals);
    if (o->json) return std::printf("%s\n", out.dump(2).c_str()), 0;
    std::printf("%-28s %10s %12s %12s %12s %12s %12s\n", metering::group_by_name(query->group_by), "REQUESTS", "PROMPT", "CACHED",
                "CACHE_WRITE", "COMPLETION", "COST_USD");
    for (const auto& row : out["data"]) {
      std::printf("%-28s %10lld %12lld %12lld %12lld %12lld %12.6f\n", row["group"].get<std::string>().substr(0, 28).c_str(),
                  static_cast<long long>(row["requests"]), static_cast<long long>(row["prompt_tokens"]),
                  static_cast<long long>(row["cached_tokens"]), static_cast<long long>(row["cache_write_tokens"]),
                  static_cast<long long>(row["completion_tokens"]), row["cost_usd"].get<double>());
    }
    const auto& t = out["total"];
    std::printf("%-28s %10lld %12lld %12lld %12lld %12lld %12.6f\n", "TOTAL", static_cast<long long>(t["requests"]),
                static_cast<long long>(t["prompt_tokens"]), static_cast<long long>(t["cached_tokens"]),
                static_cast<long long>(t["cache_write_tokens"]), static_cast<long long>(t["completion_tokens"]), t["cost_usd"].get<double>());
    return 0;
  };
}

}  // namespace tern::cli
