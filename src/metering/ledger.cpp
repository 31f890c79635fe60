#include "metering/ledger.h"

#include "util/clock.h"
#include "util/tern_home.h"

namespace tern::metering {

Result<GroupBy> parse_group_by(const std::string& text) {
  if (text.empty() || text == "none") return GroupBy::kNone;
  if (text == "key") return GroupBy::kKey;
  if (text == "org") return GroupBy::kOrg;
  if (text == "model") return GroupBy::kModel;
  if (text == "deployment") return GroupBy::kDeployment;
  if (text == "day") return GroupBy::kDay;
  return fail("group_by: must be one of key, org, model, deployment, day (got \"{}\")", text);
}

const char* group_by_name(GroupBy group_by) {
  switch (group_by) {
    case GroupBy::kKey: return "key";
    case GroupBy::kOrg: return "org";
    case GroupBy::kModel: return "model";
    case GroupBy::kDeployment: return "deployment";
    case GroupBy::kDay: return "day";
    case GroupBy::kNone: break;
  }
  return "none";
}

std::string default_ledger_path() { return tern_home() + "/ledger.db"; }

bool is_postgres_url(const std::string& location) {
  return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

std::string utc_day(int64_t time_ms) { return utc_text(time_ms, "%Y-%m-%d"); }

Result<std::unique_ptr<LedgerStore>> open_ledger(const std::string& location) {
  if (is_postgres_url(location)) return open_postgres_ledger(location);
  return open_sqlite_ledger(location);
}

}  // namespace tern::metering
