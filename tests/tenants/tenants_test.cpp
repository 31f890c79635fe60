// Keys (creation, hashing, revocation, audit, JSON specs), authentication, and admission: model
// allow-lists, concurrency, requests/min, tokens/min and budgets — including many threads racing for
// the last slot, which must never admit more than the limit.

#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "tenants/key_store.h"
#include "tenants/tenants.h"

namespace tern::tenants {
namespace {

namespace fs = std::filesystem;

class TenantsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tern-keys-" + std::to_string(::getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    path_ = (dir_ / "keys.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<KeyStore> open() {
    auto store = KeyStore::open(path_);
    EXPECT_TRUE(store) << store.error().message;
    return std::move(*store);
  }

  /// Creates a key through its own connection (as `tern keys` in another process would).
  std::pair<ApiKey, std::string> create(KeySpec spec) {
    auto created = open()->create(spec, "test");
    EXPECT_TRUE(created) << created.error().message;
    return *created;
  }

  std::unique_ptr<Tenants> tenants(double spent_before = 0) {
    auto t = std::make_unique<Tenants>(open(), [spent_before](const std::string&, int64_t) -> Result<double> { return spent_before; });
    auto loaded = t->load();
    EXPECT_TRUE(loaded) << loaded.error().message;
    return t;
  }

  fs::path dir_;
  std::string path_;
};

KeySpec named(std::string name) {
  KeySpec spec;
  spec.name = std::move(name);
  return spec;
}

TEST_F(TenantsTest, SecretsAreShownOnceAndStoredHashed) {
  auto [key, secret] = create(named("alice"));
  EXPECT_TRUE(secret.starts_with("tern-sk-" + key.id + "-"));
  EXPECT_EQ(secret.size(), std::string("tern-sk-").size() + key.id.size() + 1 + 64);
  EXPECT_EQ(key_id_of(secret), key.id);
  EXPECT_EQ(key.hash, hash_secret(key.salt, secret));
  auto listed = open()->list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].hash, key.hash);
  EXPECT_EQ(listed->front().to_json().dump().find(secret), std::string::npos);
  EXPECT_EQ(listed->front().to_json().dump().find(key.hash), std::string::npos);
}

TEST_F(TenantsTest, AnOpenServerBecomesClosedWithTheFirstKey) {
  auto t = tenants();
  EXPECT_FALSE(t->auth_required());
  auto open_call = t->authenticate("", "");
  ASSERT_TRUE(open_call);
  EXPECT_FALSE(open_call->has_value());

  auto [key, secret] = create(named("alice"));
  t->reload_if_changed();  // another connection wrote: the data version changed
  EXPECT_TRUE(t->auth_required());
  auto missing = t->authenticate("", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().status, 401);
  EXPECT_EQ(missing.error().code, "missing_api_key");
  auto wrong = t->authenticate("Bearer tern-sk-" + key.id + "-" + std::string(64, '0'), "");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, "invalid_api_key");
  auto good = t->authenticate("Bearer " + secret, "");
  ASSERT_TRUE(good) << good.error().message;
  ASSERT_TRUE(good->has_value());
  EXPECT_EQ((*good)->key_id, key.id);
  auto anthropic_style = t->authenticate("", secret);
  ASSERT_TRUE(anthropic_style);
  EXPECT_EQ((*anthropic_style)->name, "alice");
}

TEST_F(TenantsTest, RevokedAndExpiredKeysAreRefusedAndAudited) {
  auto [key, secret] = create(named("bob"));
  KeySpec short_lived = named("brief");
  short_lived.expires_in_s = 0.001;
  auto [brief, brief_secret] = create(short_lived);
  auto t = tenants();
  ASSERT_TRUE(open()->revoke("bob", "admin-x"));
  t->reload_if_changed();
  auto revoked = t->authenticate("Bearer " + secret, "");
  ASSERT_FALSE(revoked);
  EXPECT_EQ(revoked.error().code, "revoked_api_key");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto expired = t->authenticate("Bearer " + brief_secret, "");
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error().code, "expired_api_key");
  // Revoking every key does not open the server again.
  ASSERT_TRUE(open()->revoke(brief.id, "admin-x"));
  t->reload_if_changed();
  EXPECT_TRUE(t->auth_required());

  auto audit = open()->audit(10);
  ASSERT_TRUE(audit);
  ASSERT_EQ(audit->size(), 4u);
  EXPECT_EQ((*audit)[0].action, "revoke");
  EXPECT_EQ((*audit)[0].actor, "admin-x");
  EXPECT_EQ((*audit)[0].key_id, brief.id);
  EXPECT_EQ((*audit)[3].action, "create");
  EXPECT_EQ((*audit)[3].detail, R"({"name":"bob"})");
}

TEST_F(TenantsTest, NamesAreUniqueAmongLiveKeysAndSpecsAreValidated) {
  create(named("alice"));
  auto again = open()->create(named("alice"), "test");
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("a key named \"alice\" exists already"), std::string::npos);
  EXPECT_FALSE(open()->create(named("bad name with spaces"), "test"));
  KeySpec negative = named("neg");
  negative.rpm = -1;
  EXPECT_EQ(open()->create(negative, "test").error().message, "rpm: must be 0 (unlimited) or a positive number");

  EXPECT_EQ(KeySpec::from_json({{"name", "x"}, {"rpmm", 3}}).error().message, "rpmm: unknown field");
  EXPECT_EQ(KeySpec::from_json({{"rpm", "3"}}).error().message, "rpm: must be an integer");
  EXPECT_EQ(KeySpec::from_json({{"budget_period", "year"}}).error().message, "budget_period: must be day, week or month (got \"year\")");
  auto spec = KeySpec::from_json({{"name", "x"}, {"models", {"a", "b"}}, {"expires", "30d"}, {"budget_usd", 2.5}});
  ASSERT_TRUE(spec);
  EXPECT_EQ(spec->models->size(), 2u);
  EXPECT_DOUBLE_EQ(*spec->expires_in_s, 30 * 86400.0);
  EXPECT_FALSE(KeySpec::from_json(nlohmann::json::array()));
}

TEST_F(TenantsTest, UpdateChangesOnlyTheFieldsGiven) {
  KeySpec spec = named("carol");
  spec.org = "acme";
  spec.rpm = 10;
  auto [key, secret] = create(spec);
  KeySpec change;
  change.tpm = 500;
  auto updated = open()->update("carol", change, "test");
  ASSERT_TRUE(updated) << updated.error().message;
  EXPECT_EQ(updated->org, "acme");
  EXPECT_EQ(updated->limits.rpm, 10);
  EXPECT_EQ(updated->limits.tpm, 500);
  EXPECT_FALSE(open()->update("nobody", change, "test"));
}

TEST_F(TenantsTest, ModelAllowList) {
  KeySpec spec = named("narrow");
  spec.models = std::vector<std::string>{"small"};
  auto [key, secret] = create(spec);
  auto t = tenants();
  const Principal p{.key_id = key.id, .name = key.name, .org = key.org, .admin = false};
  EXPECT_TRUE(t->may_use(p, "small"));
  EXPECT_FALSE(t->may_use(p, "large"));
  // A request naming a model outside the list (as its primary or a fallback) is refused and counted.
  EXPECT_FALSE(t->check_models(p, {"small"}));
  auto refused = t->check_models(p, {"small", "large"});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->error.status, 403);
  EXPECT_EQ(refused->error.code, "model_not_allowed");
  EXPECT_EQ(refused->error.type, "permission_error");
  EXPECT_NE(refused->error.message.find("'large'"), std::string::npos);
  EXPECT_NE(t->metrics_text().find("tern:key_refusals_total{key=\"" + key.id + "\",reason=\"model_not_allowed\"} 1"), std::string::npos)
      << t->metrics_text();
}

// A key made by `tern keys create` (another connection) while the server runs works on its first
// request, without waiting for the key watcher; unknown keys re-read the store at most once per interval.
TEST_F(TenantsTest, AKeyCreatedWhileRunningWorksAtOnce) {
  auto [first, first_secret] = create(named("first"));
  auto t = tenants();
  ASSERT_TRUE(t->authenticate("Bearer " + first_secret, ""));
  std::this_thread::sleep_for(Tenants::kMissRefreshInterval);  // no other miss looked in this interval
  auto [late, late_secret] = create(named("late"));
  auto good = t->authenticate("Bearer " + late_secret, "");  // no reload_if_changed() in between
  ASSERT_TRUE(good) << good.error().message;
  EXPECT_EQ((*good)->key_id, late.id);
  // A flood of unknown keys: the store is asked at most once per interval, and each is refused.
  for (int i = 0; i < 1000; ++i) {
    auto bad = t->authenticate("Bearer tern-sk-nosuchkey-" + std::string(64, '0'), "");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, "invalid_api_key");
  }
}

TEST_F(TenantsTest, RequestsPerMinuteRefuseWithRetryAfterAndHeaders) {
  KeySpec spec = named("rpm");
  spec.rpm = 3;
  auto [key, secret] = create(spec);
  auto t = tenants();
  const Principal p{.key_id = key.id, .name = key.name, .org = {}, .admin = false};
  std::vector<std::unique_ptr<Admission>> held;
  for (int i = 0; i < 3; ++i) {
    auto a = t->admit(p, 10, 10, 0);
    ASSERT_TRUE(a) << i;
    held.push_back(std::move(*a));
  }
  EXPECT_EQ(held[2]->headers()[0], (std::pair<std::string, std::string>{"x-ratelimit-limit-requests", "3"}));
  EXPECT_EQ(held[2]->headers()[1], (std::pair<std::string, std::string>{"x-ratelimit-remaining-requests", "0"}));
  auto refused = t->admit(p, 10, 10, 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().error.status, 429);
  EXPECT_EQ(refused.error().error.code, "rate_limit_requests");
  EXPECT_EQ(refused.error().error.retry_after, "20");  // one request refills in 60/3 s
  EXPECT_NE(t->metrics_text().find("tern:key_refusals_total{key=\"" + key.id + "\",reason=\"rate_limit_requests\"} 1"), std::string::npos);
}

TEST_F(TenantsTest, TokensPerMinuteReserveAndSettleWithRealUsage) {
  KeySpec spec = named("tpm");
  spec.tpm = 1000;
  auto [key, secret] = create(spec);
  auto t = tenants();
  const Principal p{.key_id = key.id, .name = key.name, .org = {}, .admin = false};
  auto first = t->admit(p, 100, 500, 0);  // reserves 600 of 1000
  ASSERT_TRUE(first);
  auto second = t->admit(p, 100, 500, 0);  // 600 > 400 left
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().error.code, "rate_limit_tokens");
  (*first)->settle(150, 0);  // used 150: 450 come back
  auto third = t->admit(p, 100, 500, 0);
  EXPECT_TRUE(third) << "850 tokens should be free after settling";
  // A request larger than a minute's tokens still runs once the bucket is full (it is capped).
}

TEST_F(TenantsTest, ParallelClientsNeverExceedTheConcurrencyCap) {
  KeySpec spec = named("parallel");
  spec.max_parallel = 4;
  spec.rpm = 1000;  // room for every attempt below: only the cap refuses
  auto [key, secret] = create(spec);
  auto t = tenants();
  const Principal p{.key_id = key.id, .name = key.name, .org = {}, .admin = false};
  std::atomic<int> in_flight{0};
  std::atomic<int> peak{0};
  std::atomic<int> admitted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 50; ++j) {
        auto a = t->admit(p, 1, 1, 0);
        if (!a) {
          refused.fetch_add(1);
          continue;
        }
        admitted.fetch_add(1);
        const int now = in_flight.fetch_add(1) + 1;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        in_flight.fetch_sub(1);
        (*a)->settle(2, 0);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_LE(peak.load(), 4);
  EXPECT_GT(refused.load(), 0);
  EXPECT_LE(admitted.load(), 1000);  // and never past the requests/min bucket
}

TEST_F(TenantsTest, RacingForTheLastRequestsAdmitsExactlyTheLimit) {
  KeySpec spec = named("race");
  spec.rpm = 37;
  auto [key, secret] = create(spec);
  auto t = tenants();
  const Principal p{.key_id = key.id, .name = key.name, .org = {}, .admin = false};
  std::atomic<int> admitted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 20; ++j) {
        if (auto a = t->admit(p, 1, 1, 0)) admitted.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  // 320 attempts within well under a second: the bucket's 37 plus at most what refilled meanwhile.
  EXPECT_GE(admitted.load(), 37);
  EXPECT_LE(admitted.load(), 38);
}

TEST_F(TenantsTest, BudgetsRefuseWhatWouldExceedThemAndCountSpendFromTheLedger) {
  KeySpec spec = named("budget");
  spec.budget_usd = 1.0;
  spec.budget_period = BudgetPeriod::kDay;
  auto [key, secret] = create(spec);
  auto t = tenants(/*spent_before=*/0.7);  // the ledger says 0.70 was spent today before a restart
  const Principal p{.key_id = key.id, .name = key.name, .org = {}, .admin = false};
  auto a = t->admit(p, 10, 10, 0.2);
  ASSERT_TRUE(a);
  auto b = t->admit(p, 10, 10, 0.2);  // 0.7 + 0.2 in flight + 0.2 > 1.0
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().error.status, 402);
  EXPECT_EQ(b.error().error.code, "budget_exceeded");
  EXPECT_NE(b.error().error.message.find("has used $0.7000 of its $1.0000 daily budget"), std::string::npos) << b.error().error.message;
  (*a)->settle(20, 0.05);  // it cost less than estimated
  EXPECT_TRUE(t->admit(p, 10, 10, 0.2));
  EXPECT_NE(t->metrics_text().find("tern:key_budget_spent_usd{key=\"" + key.id + "\"} 0.75"), std::string::npos) << t->metrics_text();
  EXPECT_NE(t->metrics_text().find("tern:key_budget_alert{key=\"" + key.id + "\"} 0"), std::string::npos);
}

TEST_F(TenantsTest, ANewlySetLimitStartsFullAndANewPeriodReadsTheLedger) {
  KeySpec spec = named("later");
  spec.budget_usd = 1.0;
  spec.budget_period = BudgetPeriod::kDay;
  auto [key, secret] = create(spec);
  auto t = tenants(/*spent_before=*/0.7);
  const Principal p{.key_id = key.id, .name = key.name, .org = {}, .admin = false};
  auto a = t->admit(p, 1, 1, 0.1);
  ASSERT_TRUE(a);
  (*a)->settle(2, 0.2);  // 0.9 spent today
  KeySpec change;
  change.rpm = 2;                              // from unlimited: two requests at once, not zero
  change.budget_period = BudgetPeriod::kMonth;  // this month's spend comes from the ledger (0.7 here)
  ASSERT_TRUE(open()->update("later", change, "test"));
  t->reload_if_changed();
  EXPECT_TRUE(t->admit(p, 1, 1, 0));
  EXPECT_TRUE(t->admit(p, 1, 1, 0));
  EXPECT_FALSE(t->admit(p, 1, 1, 0));
  EXPECT_NE(t->metrics_text().find("tern:key_budget_spent_usd{key=\"" + key.id + "\"} 0.7\n"), std::string::npos) << t->metrics_text();
}

TEST_F(TenantsTest, NamesShapedLikeKeyIdsAreRefusedAndIdsWinOverNames) {
  auto [key, secret] = create(named("first"));
  auto clash = open()->create(named(key.id), "test");
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.error().message.find("looks like a key id"), std::string::npos);
  auto revoked = open()->revoke(key.id, "test");
  ASSERT_TRUE(revoked);
  EXPECT_EQ(revoked->name, "first");
}

TEST_F(TenantsTest, AFailingKeyStoreStopsTheStart) {
  auto t = std::make_unique<Tenants>(open(), [](const std::string&, int64_t) -> Result<double> { return fail("ledger unreachable"); });
  create(named("someone"));
  auto loaded = t->load();
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().message.find("ledger unreachable"), std::string::npos);
}

TEST(BudgetPeriods, StartAndEndInUtc) {
  const int64_t monday_noon = 1'796'041'800'000;     // 2026-11-30T12:30:00Z
  const int64_t wednesday = monday_noon + 2 * 86'400'000;  // 2026-12-02T12:30:00Z
  EXPECT_EQ(period_start_ms(BudgetPeriod::kDay, monday_noon), 1'795'996'800'000);  // 2026-11-30T00:00Z
  EXPECT_EQ(period_start_ms(BudgetPeriod::kWeek, wednesday), 1'795'996'800'000);   // back to Monday
  EXPECT_EQ(period_start_ms(BudgetPeriod::kMonth, monday_noon), 1'793'491'200'000);  // 2026-11-01
  EXPECT_EQ(period_start_ms(BudgetPeriod::kMonth, wednesday), 1'796'083'200'000);    // 2026-12-01
  EXPECT_EQ(period_end_ms(BudgetPeriod::kMonth, 1'793'491'200'000), 1'796'083'200'000);
  EXPECT_EQ(period_end_ms(BudgetPeriod::kMonth, 1'796'083'200'000), 1'798'761'600'000);  // 2027-01-01
  EXPECT_EQ(period_end_ms(BudgetPeriod::kWeek, 1'795'996'800'000), 1'795'996'800'000 + 7 * 86'400'000LL);
}

TEST(CacheSalt, OrgScopedAndNarrowedByTheRequest) {
  const Principal a1{.key_id = "k1", .name = "a1", .org = "acme", .admin = false};
  const Principal a2{.key_id = "k2", .name = "a2", .org = "acme", .admin = false};
  const Principal b{.key_id = "k3", .name = "b", .org = "beta", .admin = false};
  const Principal loner{.key_id = "k4", .name = "l", .org = "", .admin = false};
  EXPECT_EQ(Tenants::cache_salt(&a1, ""), Tenants::cache_salt(&a2, ""));
  EXPECT_NE(Tenants::cache_salt(&a1, ""), Tenants::cache_salt(&b, ""));
  EXPECT_NE(Tenants::cache_salt(&a1, "team-x"), Tenants::cache_salt(&a1, ""));
  EXPECT_NE(Tenants::cache_salt(&a1, "team-x"), Tenants::cache_salt(&b, "team-x"));  // never wider than the org
  EXPECT_NE(Tenants::cache_salt(&loner, ""), Tenants::cache_salt(&a1, ""));
  EXPECT_EQ(Tenants::cache_salt(nullptr, "s"), "s");
}

}  // namespace
}  // namespace tern::tenants
