// The request log (observe/request_log.h): what a line holds (and never holds without --log-content),
// rotation by size with a bounded number of old files, hostile text, a bad path, a full queue.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "observe/request_log.h"

namespace tern::observe {
namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

RequestLogEntry entry(int i) {
  RequestLogEntry e;
  e.arrival_s = 1764230400.0 + i;
  e.row.request_id = "chatcmpl-" + std::to_string(i);
  e.row.key_id = "k1";
  e.row.org = "acme";
  e.row.model = "smollm2";
  e.row.deployment = "local";
  e.row.prompt_tokens = 100 + i;
  e.row.cached_tokens = 64;
  e.row.completion_tokens = 20;
  e.row.cost_usd = 0.001;
  e.row.ttft_ms = 12.5;
  e.row.e2e_ms = 250;
  e.row.status = 200;
  e.row.finish_reason = "stop";
  e.queued_ms = 1.5;
  e.prefix_hash = short_hash("You are helpful.");
  e.request = nlohmann::json::array({{{"role", "user"}, {"content", "a secret prompt"}}});
  e.output = "a secret answer";
  return e;
}

class RequestLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tern-request-log-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name = "requests.jsonl") const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(RequestLogTest, ALineHoldsTheRequestsFiguresInTheShapeBenchProfileReads) {
  {
    auto log = RequestLog::open({.path = path()});
    ASSERT_TRUE(log) << log.error().message;
    (*log)->append(entry(1));
    (*log)->flush();
    EXPECT_EQ((*log)->stats().lines, 1);
  }
  const auto lines = read_lines(path());
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::json& j = lines[0];
  EXPECT_DOUBLE_EQ(j.at("timestamp").get<double>(), 1764230401.0);
  EXPECT_EQ(j.at("request_id"), "chatcmpl-1");
  EXPECT_EQ(j.at("key_id"), "k1");
  EXPECT_EQ(j.at("org"), "acme");
  EXPECT_EQ(j.at("model"), "smollm2");
  EXPECT_EQ(j.at("deployment"), "local");
  EXPECT_EQ(j.at("status"), 200);
  EXPECT_EQ(j.at("finish_reason"), "stop");
  EXPECT_EQ(j.at("prompt_tokens"), 101);
  EXPECT_EQ(j.at("cached_tokens"), 64);
  EXPECT_EQ(j.at("completion_tokens"), 20);
  EXPECT_DOUBLE_EQ(j.at("queued_ms").get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j.at("ttft_ms").get<double>(), 12.5);
  EXPECT_DOUBLE_EQ(j.at("end").get<double>(), 1764230401.25);
  EXPECT_EQ(j.at("prefix_hash").get<std::string>().size(), 16u);
  EXPECT_FALSE(j.contains("adapter")) << "a base model's request";
  RequestLogEntry lora = entry(3);
  lora.adapter = "support-v2";
  EXPECT_EQ(nlohmann::json::parse(RequestLog::format(lora, false)).at("adapter"), "support-v2");
  // Never the text unless asked for.
  EXPECT_FALSE(j.contains("request"));
  EXPECT_FALSE(j.contains("output"));
  EXPECT_EQ(j.dump().find("secret"), std::string::npos);
}

TEST_F(RequestLogTest, ContentOnlyWithLogContentAndInvalidUtf8IsReplaced) {
  {
    auto log = RequestLog::open({.path = path(), .log_content = true});
    ASSERT_TRUE(log);
    RequestLogEntry e = entry(2);
    e.output = std::string("broken \xff\xfe utf-8");
    (*log)->append(std::move(e));
  }  // the destructor writes what is queued
  const auto lines = read_lines(path());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("request")[0].at("content"), "a secret prompt");
  EXPECT_NE(lines[0].at("output").get<std::string>().find("broken"), std::string::npos);
}

TEST_F(RequestLogTest, RotatesBySizeAndKeepsOnlySoManyOldFiles) {
  const int64_t max_bytes = 2048;
  {
    auto log = RequestLog::open({.path = path(), .max_bytes = max_bytes, .keep = 2});
    ASSERT_TRUE(log);
    for (int i = 0; i < 100; ++i) (*log)->append(entry(i));
    (*log)->flush();
    EXPECT_GT((*log)->stats().rotations, 2);
    EXPECT_EQ((*log)->stats().lines, 100);
  }
  ASSERT_TRUE(fs::exists(path()));
  ASSERT_TRUE(fs::exists(path() + ".1"));
  ASSERT_TRUE(fs::exists(path() + ".2"));
  EXPECT_FALSE(fs::exists(path() + ".3"));
  for (const std::string& file : {path(), path() + ".1", path() + ".2"}) EXPECT_LE(static_cast<int64_t>(fs::file_size(file)), max_bytes) << file;
  // The newest lines are in the live file, in order, and the files hold consecutive runs.
  const auto live = read_lines(path());
  ASSERT_FALSE(live.empty());
  EXPECT_EQ(live.back().at("request_id"), "chatcmpl-99");
  const auto older = read_lines(path() + ".1");
  ASSERT_FALSE(older.empty());
  EXPECT_EQ(older.back().at("timestamp").get<double>() + 1, live.front().at("timestamp").get<double>());
}

TEST_F(RequestLogTest, ReopeningAppendsAndBadSettingsAreRefused) {
  for (int round = 0; round < 2; ++round) {
    auto log = RequestLog::open({.path = path()});
    ASSERT_TRUE(log);
    (*log)->append(entry(round));
  }
  EXPECT_EQ(read_lines(path()).size(), 2u);
  const auto missing_dir = RequestLog::open({.path = path("no/such/dir/log.jsonl")});
  ASSERT_FALSE(missing_dir);
  EXPECT_NE(missing_dir.error().message.find("cannot open the request log"), std::string::npos);
  EXPECT_FALSE(RequestLog::open({.path = ""}));
  EXPECT_FALSE(RequestLog::open({.path = path(), .max_bytes = 10}));
  EXPECT_FALSE(RequestLog::open({.path = path(), .keep = -1}));
}

TEST_F(RequestLogTest, AFullQueueDropsAndCountsInsteadOfBlocking) {
  auto log = RequestLog::open({.path = path(), .max_queued = 0});
  ASSERT_TRUE(log);
  for (int i = 0; i < 10; ++i) (*log)->append(entry(i));
  (*log)->flush();  // returns: dropped lines count as done
  EXPECT_EQ((*log)->stats().dropped, 10);
  EXPECT_EQ((*log)->stats().lines, 0);
}

}  // namespace
}  // namespace tern::observe
