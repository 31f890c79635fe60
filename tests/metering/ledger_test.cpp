// The ledger: SQLite rows round-trip into every grouping, retention deletes only old rows, and the
// writer's group commit calls each row's on_durable after its row is readable — also from another
// connection, as after a crash. With TERN_TEST_POSTGRES_URL set (tests/metering/postgres_test.sh starts
// a real server), the same checks run against PostgreSQL.

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

#include "metering/ledger.h"
#include "metering/ledger_writer.h"

namespace tern::metering {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kNov1 = 1'793'491'200'000;  // 2026-11-01T00:00:00Z

LedgerRow row(int64_t time_ms, std::string key, std::string org, std::string model, double cost, int64_t prompt = 10) {
  LedgerRow r;
  r.time_ms = time_ms;
  r.request_id = "req-" + std::to_string(time_ms) + key;
  r.key_id = std::move(key);
  r.org = std::move(org);
  r.model = std::move(model);
  r.deployment = r.model + "-dep";
  r.prompt_tokens = prompt;
  r.cached_tokens = 2;
  r.cache_write_tokens = 1;
  r.completion_tokens = 5;
  r.cost_usd = cost;
  r.ttft_ms = 12.5;
  r.e2e_ms = 80;
  r.finish_reason = "stop\ttab\nnewline\\slash";  // COPY's escapes
  return r;
}

class LedgerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") {
      const char* url = std::getenv("TERN_TEST_POSTGRES_URL");
      if (url == nullptr) GTEST_SKIP() << "TERN_TEST_POSTGRES_URL not set (tests/metering/postgres_test.sh sets it)";
      location_ = url;
    } else {
      dir_ = fs::temp_directory_path() / ("tern-ledger-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
      fs::remove_all(dir_);
      location_ = (dir_ / "ledger.db").string();
    }
    auto store = open_ledger(location_);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    // A shared PostgreSQL database: start from an empty table.
    if (GetParam() == "postgres") {
      ASSERT_TRUE(store_->delete_before(INT64_MAX, INT64_MAX));
    }
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::string location_;
  fs::path dir_;
  std::unique_ptr<LedgerStore> store_;
};

TEST_P(LedgerTest, RowsComeBackInEveryGrouping) {
  std::vector<LedgerRow> rows = {row(kNov1 + 1000, "k1", "acme", "small", 0.5), row(kNov1 + kDay + 5, "k1", "acme", "large", 1.5, 100),
                                 row(kNov1 + 2 * kDay, "k2", "beta", "small", 0.25), row(kNov1 - 1, "k1", "acme", "small", 9)};
  auto appended = store_->append(rows);
  ASSERT_TRUE(appended) << appended.error().message;
  UsageQuery query{.from_ms = kNov1, .to_ms = kNov1 + 30 * kDay, .key_id = {}, .group_by = GroupBy::kNone};
  auto all = store_->usage(query);
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].requests, 3);  // the row before from is outside
  EXPECT_EQ((*all)[0].prompt_tokens, 120);
  EXPECT_EQ((*all)[0].cached_tokens, 6);
  EXPECT_EQ((*all)[0].cache_write_tokens, 3);
  EXPECT_EQ((*all)[0].completion_tokens, 15);
  EXPECT_DOUBLE_EQ((*all)[0].cost_usd, 2.25);

  query.group_by = GroupBy::kKey;
  auto by_key = store_->usage(query);
  ASSERT_TRUE(by_key);
  ASSERT_EQ(by_key->size(), 2u);
  EXPECT_EQ((*by_key)[0].group, "k1");  // largest cost first
  EXPECT_DOUBLE_EQ((*by_key)[0].cost_usd, 2.0);
  EXPECT_EQ((*by_key)[1].group, "k2");

  query.group_by = GroupBy::kDay;
  auto by_day = store_->usage(query);
  ASSERT_TRUE(by_day);
  ASSERT_EQ(by_day->size(), 3u);
  EXPECT_EQ((*by_day)[0].group, "2026-11-02");
  EXPECT_EQ((*by_day)[1].group, "2026-11-01");
  EXPECT_EQ((*by_day)[2].group, "2026-11-03");

  query.group_by = GroupBy::kModel;
  query.key_id = "k1";
  auto k1_models = store_->usage(query);
  ASSERT_TRUE(k1_models);
  ASSERT_EQ(k1_models->size(), 2u);
  EXPECT_EQ((*k1_models)[0].group, "large");
  EXPECT_EQ((*k1_models)[1].group, "small");
  EXPECT_EQ((*k1_models)[1].requests, 1);

  query.group_by = GroupBy::kOrg;
  query.key_id.clear();
  auto by_org = store_->usage(query);
  ASSERT_TRUE(by_org);
  ASSERT_EQ(by_org->size(), 2u);
  EXPECT_EQ((*by_org)[0].group, "acme");

  query.group_by = GroupBy::kDeployment;
  auto by_deployment = store_->usage(query);
  ASSERT_TRUE(by_deployment);
  EXPECT_EQ((*by_deployment)[0].group, "large-dep");
}

TEST_P(LedgerTest, RetentionDeletesOnlyOldRowsInBatches) {
  std::vector<LedgerRow> rows;
  for (int i = 0; i < 25; ++i) rows.push_back(row(kNov1 + i, "k", "o", "m", 1));
  for (int i = 0; i < 5; ++i) rows.push_back(row(kNov1 + kDay + i, "k", "o", "m", 1));
  ASSERT_TRUE(store_->append(rows));
  auto first = store_->delete_before(kNov1 + kDay, 10);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, 10);
  int64_t total = *first;
  while (true) {
    auto more = store_->delete_before(kNov1 + kDay, 10);
    ASSERT_TRUE(more);
    if (*more == 0) break;
    total += *more;
  }
  EXPECT_EQ(total, 25);
  auto left = store_->usage({.from_ms = 0, .to_ms = INT64_MAX, .key_id = {}, .group_by = GroupBy::kNone});
  ASSERT_TRUE(left);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].requests, 5);
}

TEST_P(LedgerTest, WriterCallsOnDurableAfterTheRowIsReadableElsewhere) {
  auto writer_store = open_ledger(location_);
  ASSERT_TRUE(writer_store);
  LedgerWriter writer(std::move(*writer_store), {});
  constexpr int kThreads = 8;
  constexpr int kRows = 200;
  std::atomic<int> durable{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRows; ++i) {
        std::string key = "t";
        key += std::to_string(t);
        writer.append(row(kNov1 + i, key, "o", "m", 0.001), [&] { durable.fetch_add(1); });
      }
    });
  }
  for (auto& thread : threads) thread.join();
  writer.flush();
  EXPECT_EQ(durable.load(), kThreads * kRows);
  // Every row is visible through a separate connection (this test's store_), as after a restart.
  auto totals = store_->usage({.from_ms = 0, .to_ms = INT64_MAX, .key_id = {}, .group_by = GroupBy::kKey});
  ASSERT_TRUE(totals);
  ASSERT_EQ(totals->size(), static_cast<size_t>(kThreads));
  for (const auto& t : *totals) EXPECT_EQ(t.requests, kRows) << t.group;
  const LedgerStats stats = writer.stats();
  EXPECT_EQ(stats.rows_written, kThreads * kRows);
  EXPECT_LT(stats.batches, kThreads * kRows);  // grouped
  EXPECT_EQ(stats.write_errors, 0);
}

TEST_P(LedgerTest, OneRowIsDurableBeforeItsCallbackRuns) {
  auto writer_store = open_ledger(location_);
  ASSERT_TRUE(writer_store);
  LedgerWriter writer(std::move(*writer_store), {});
  std::atomic<int64_t> seen{-1};
  LedgerRow r = row(kNov1, "solo", "o", "m", 1);
  writer.append(r, [&] {
    // Read through another connection from inside the callback: the row must be there already.
    auto other = open_ledger(location_);
    auto totals = other ? (*other)->usage({.from_ms = 0, .to_ms = INT64_MAX, .key_id = "solo", .group_by = GroupBy::kNone})
                        : Result<std::vector<UsageTotals>>(std::unexpected(other.error()));
    seen.store(totals && !totals->empty() ? (*totals)[0].requests : 0);
  });
  writer.flush();
  EXPECT_EQ(seen.load(), 1);
}

INSTANTIATE_TEST_SUITE_P(Stores, LedgerTest, ::testing::Values("sqlite", "postgres"), [](const auto& info) { return info.param; });

TEST(LedgerWriter, SpillsRowsAStoreRefusesAndStillAnswers) {
  class BrokenStore final : public LedgerStore {
   public:
    Result<void> append(std::span<const LedgerRow>) override { return fail("disk full"); }
    Result<std::vector<UsageTotals>> usage(const UsageQuery&) override { return std::vector<UsageTotals>{}; }
    Result<int64_t> delete_before(int64_t, int64_t) override { return 0; }
    std::string describe() const override { return "broken"; }
  };
  const fs::path spill = fs::temp_directory_path() / ("tern-spill-" + std::to_string(::getpid()) + ".jsonl");
  fs::remove(spill);
  std::atomic<int> answered{0};
  {
    LedgerWriter writer(std::make_unique<BrokenStore>(), {.retention_days = 0, .max_batch_rows = 8192, .retention_batch_rows = 5000,
                                                          .spill_path = spill.string()});
    for (int i = 0; i < 3; ++i) writer.append(row(kNov1 + i, "k", "o", "m", 1), [&] { answered.fetch_add(1); });
    writer.flush();
    EXPECT_EQ(writer.stats().rows_spilled, 3);
    EXPECT_GT(writer.stats().write_errors, 0);
  }
  EXPECT_EQ(answered.load(), 3);
  std::ifstream in(spill);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    EXPECT_NE(line.find("\"key_id\":\"k\""), std::string::npos) << line;
    ++lines;
  }
  EXPECT_EQ(lines, 3);
  fs::remove(spill);
}

TEST(LedgerWriter, OneRowTheStoreRefusesDoesNotCostTheOthers) {
  class PickyStore final : public LedgerStore {
   public:
    Result<void> append(std::span<const LedgerRow> rows) override {
      for (const auto& r : rows) {
        if (r.model == "bad") return fail("invalid byte sequence");
      }
      written += static_cast<int>(rows.size());
      return {};
    }
    Result<std::vector<UsageTotals>> usage(const UsageQuery&) override { return std::vector<UsageTotals>{}; }
    Result<int64_t> delete_before(int64_t, int64_t) override { return 0; }
    std::string describe() const override { return "picky"; }
    std::atomic<int> written{0};
  };
  const fs::path spill = fs::temp_directory_path() / ("tern-spill-picky-" + std::to_string(::getpid()) + ".jsonl");
  fs::remove(spill);
  auto store = std::make_unique<PickyStore>();
  PickyStore* picky = store.get();
  LedgerWriter writer(std::move(store), {.retention_days = 0, .max_batch_rows = 8192, .retention_batch_rows = 1000, .spill_path = spill.string()});
  // However the rows fall into batches, only the bad one is set aside.
  for (int i = 0; i < 20; ++i) writer.append(row(kNov1 + i, "k", "o", i == 7 ? "bad" : "good", 1));
  writer.flush();
  EXPECT_EQ(picky->written.load(), 19);
  EXPECT_EQ(writer.stats().rows_written, 19);
  EXPECT_EQ(writer.stats().rows_spilled, 1);
  fs::remove(spill);
}

TEST(LedgerWriter, AfterClosingCallbacksRowsAreWrittenButNothingCallsBack) {
  auto store = open_sqlite_ledger((fs::temp_directory_path() / ("tern-close-" + std::to_string(::getpid()) + ".db")).string());
  ASSERT_TRUE(store);
  LedgerWriter writer(std::move(*store), {});
  std::atomic<int> called{0};
  writer.append(row(kNov1, "k", "o", "m", 1), [&] { called.fetch_add(1); });
  std::atomic<int> queried{0};
  writer.run_query([&] { queried.fetch_add(1); });
  writer.close_callbacks();
  EXPECT_EQ(called.load(), 1);  // what was pending ran
  EXPECT_EQ(queried.load(), 1);
  writer.append(row(kNov1 + 1, "k", "o", "m", 1), [&] { called.fetch_add(1); });
  writer.run_query([&] { queried.fetch_add(1); });
  writer.flush();
  EXPECT_EQ(called.load(), 1);
  EXPECT_EQ(queried.load(), 1);
  EXPECT_EQ(writer.stats().rows_written, 2);
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(fs::temp_directory_path() / ("tern-close-" + std::to_string(::getpid()) + ".db" + suffix));
}

TEST(Ledger, GroupByAndDayNames) {
  EXPECT_EQ(*parse_group_by("model"), GroupBy::kModel);
  EXPECT_EQ(*parse_group_by(""), GroupBy::kNone);
  EXPECT_EQ(parse_group_by("user").error().message, "group_by: must be one of key, org, model, deployment, day (got \"user\")");
  EXPECT_EQ(utc_day(kNov1 + kDay - 1), "2026-11-01");
  EXPECT_TRUE(is_postgres_url("postgresql://localhost/tern"));
  EXPECT_FALSE(is_postgres_url("/var/lib/tern/ledger.db"));
}

TEST(Ledger, UnreachablePostgresNamesTheServerWithoutItsPassword) {
  auto store = open_ledger("postgresql://tern:secret@127.0.0.1:1/tern?connect_timeout=2");
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("postgresql: cannot connect to postgresql://tern:***@127.0.0.1:1/tern"), std::string::npos)
      << store.error().message;
  EXPECT_EQ(store.error().message.find("secret"), std::string::npos);
  auto by_parameter = open_ledger("postgresql:///tern?host=127.0.0.1&port=1&password=hunter2&connect_timeout=2");
  ASSERT_FALSE(by_parameter);
  EXPECT_NE(by_parameter.error().message.find("&password=***&connect_timeout=2"), std::string::npos) << by_parameter.error().message;
  EXPECT_EQ(by_parameter.error().message.find("hunter2"), std::string::npos);
}

}  // namespace
}  // namespace tern::metering
