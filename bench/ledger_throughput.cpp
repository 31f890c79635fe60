// Ledger benchmarks (docs/benchmarks.md, "Ledger"):
//   write   rows/s from many producer threads through LedgerWriter into SQLite or PostgreSQL, each
//           row counted once its on_durable ran (the rate a serving gateway can sustain);
//   query   fill a ledger to --rows rows (--keys keys over --days days), then time one key's month
//           (the budget and /v1/usage query) and whole-ledger group-bys; median and max of --repeat;
//   retention  time each retention batch (what a writer waits behind) deleting the oldest day.
//
//   build/bench/ledger_throughput write --ledger /tmp/l.db --rows 200000 --producers 4
//   build/bench/ledger_throughput query --ledger /tmp/big.db --rows 10000000
//   build/bench/ledger_throughput write --ledger postgresql:///postgres?host=/tmp/pg&port=5432

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "metering/ledger.h"
#include "metering/ledger_writer.h"

namespace {

using namespace tern::metering;
using Clock = std::chrono::steady_clock;

constexpr int64_t kDay = 86'400'000;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

LedgerRow make_row(std::mt19937_64& rng, int64_t time_ms, int num_keys) {
  static const char* kModels[] = {"smollm2", "gemma", "gpt-4o-mini", "claude-haiku", "llama-8b"};
  LedgerRow r;
  r.time_ms = time_ms;
  r.request_id = fmt::format("chatcmpl-{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
  const int key = static_cast<int>(rng() % static_cast<uint64_t>(num_keys));
  r.key_id = fmt::format("k{:012x}", key * 2654435761ULL % 0xffffffffffffULL);
  r.org = fmt::format("org{}", key % 20);
  r.model = kModels[rng() % 5];
  r.deployment = r.model + "-a";
  r.prompt_tokens = 100 + static_cast<int64_t>(rng() % 4000);
  r.cached_tokens = static_cast<int64_t>(rng() % 100);
  r.completion_tokens = 10 + static_cast<int64_t>(rng() % 500);
  r.cost_usd = static_cast<double>(r.prompt_tokens + r.completion_tokens) * 1e-6;
  r.ttft_ms = 50;
  r.e2e_ms = 900;
  r.finish_reason = "stop";
  return r;
}

int write_bench(const std::string& location, int64_t rows, int producers) {
  auto store = open_ledger(location);
  if (!store) return std::fprintf(stderr, "error: %s\n", store.error().message.c_str()), 1;
  std::printf("write: %s, %lld rows from %d producer threads\n", (*store)->describe().c_str(), static_cast<long long>(rows), producers);
  std::atomic<int64_t> durable{0};
  const auto start = Clock::now();
  {
    LedgerWriter writer(std::move(*store), {});
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&, p] {
        std::mt19937_64 rng(static_cast<uint64_t>(p) + 1);
        const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
        for (int64_t i = p; i < rows; i += producers) writer.append(make_row(rng, now, 200), [&] { durable.fetch_add(1, std::memory_order_relaxed); });
      });
    }
    for (auto& t : threads) t.join();
    writer.flush();
    const double s = seconds_since(start);
    const LedgerStats stats = writer.stats();
    std::printf("write: %lld rows durable in %.2f s = %.0f rows/s (%lld transactions, %.0f rows each)\n",
                static_cast<long long>(durable.load()), s, static_cast<double>(durable.load()) / s, static_cast<long long>(stats.batches),
                static_cast<double>(stats.rows_written) / static_cast<double>(std::max<int64_t>(1, stats.batches)));
  }
  return 0;
}

struct Timing {
  double median_ms, max_ms;
};

template <class F>
Timing time_it(int repeat, F&& f) {
  std::vector<double> ms;
  for (int i = 0; i < repeat; ++i) {
    const auto start = Clock::now();
    f(i);
    ms.push_back(seconds_since(start) * 1000);
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.back()};
}

int query_bench(const std::string& location, int64_t rows, int num_keys, int days, int repeat, bool fill, int64_t retention_batch) {
  auto store = open_ledger(location);
  if (!store) return std::fprintf(stderr, "error: %s\n", store.error().message.c_str()), 1;
  const int64_t end = 1'796'083'200'000;  // 2026-12-01T00:00Z
  const int64_t begin = end - days * kDay;
  if (fill) {
    std::printf("query: filling %s with %lld rows: %d keys over %d days\n", (*store)->describe().c_str(), static_cast<long long>(rows), num_keys, days);
    std::mt19937_64 rng(7);
    std::vector<LedgerRow> batch;
    const auto start = Clock::now();
    for (int64_t i = 0; i < rows; ++i) {
      batch.push_back(make_row(rng, begin + static_cast<int64_t>(static_cast<double>(i) / static_cast<double>(rows) * static_cast<double>(days * kDay)), num_keys));
      if (batch.size() == 50'000 || i + 1 == rows) {
        if (auto ok = (*store)->append(batch); !ok) return std::fprintf(stderr, "error: %s\n", ok.error().message.c_str()), 1;
        batch.clear();
        std::fprintf(stderr, "\r  %lld rows, %.0f rows/s", static_cast<long long>(i + 1), static_cast<double>(i + 1) / seconds_since(start));
      }
    }
    std::fprintf(stderr, "\n");
  }
  std::mt19937_64 rng(11);
  std::vector<std::string> keys;
  for (int k = 0; k < num_keys; ++k) keys.push_back(fmt::format("k{:012x}", k * 2654435761ULL % 0xffffffffffffULL));
  const int64_t month_start = end - 30 * kDay;
  int64_t rows_seen = 0;
  const Timing one_key = time_it(repeat, [&](int i) {
    auto t = (*store)->usage({.from_ms = month_start, .to_ms = end, .key_id = keys[(static_cast<size_t>(i) * 37) % keys.size()], .group_by = GroupBy::kNone});
    if (t && !t->empty()) rows_seen = (*t)[0].requests;
  });
  std::printf("query: one key's month (%lld rows of it), no grouping: median %.2f ms, max %.2f ms over %d keys\n",
              static_cast<long long>(rows_seen), one_key.median_ms, one_key.max_ms, repeat);
  const Timing one_key_models = time_it(repeat, [&](int i) {
    (void)(*store)->usage({.from_ms = month_start, .to_ms = end, .key_id = keys[(static_cast<size_t>(i) * 53) % keys.size()], .group_by = GroupBy::kModel});
  });
  std::printf("query: one key's month by model: median %.2f ms, max %.2f ms\n", one_key_models.median_ms, one_key_models.max_ms);
  const Timing one_key_days = time_it(repeat, [&](int i) {
    (void)(*store)->usage({.from_ms = month_start, .to_ms = end, .key_id = keys[(static_cast<size_t>(i) * 71) % keys.size()], .group_by = GroupBy::kDay});
  });
  std::printf("query: one key's month by day: median %.2f ms, max %.2f ms\n", one_key_days.median_ms, one_key_days.max_ms);
  const Timing all_day = time_it(std::max(1, repeat / 10), [&](int) {
    (void)(*store)->usage({.from_ms = end - kDay, .to_ms = end, .key_id = {}, .group_by = GroupBy::kKey});
  });
  std::printf("query: every key's last day by key: median %.2f ms, max %.2f ms\n", all_day.median_ms, all_day.max_ms);
  // Retention: delete the oldest day in batches; the longest batch is what a writer waits behind.
  std::vector<double> batch_ms;
  int64_t deleted = 0;
  for (;;) {
    const auto start = Clock::now();
    auto n = (*store)->delete_before(begin + kDay, retention_batch);
    batch_ms.push_back(seconds_since(start) * 1000);
    if (!n) return std::fprintf(stderr, "error: %s\n", n.error().message.c_str()), 1;
    deleted += *n;
    if (*n < retention_batch) break;
  }
  std::sort(batch_ms.begin(), batch_ms.end());
  std::printf("retention: deleted %lld rows (the oldest day) in %zu batches of %lld: median %.2f ms, max %.2f ms per batch\n",
              static_cast<long long>(deleted), batch_ms.size(), static_cast<long long>(retention_batch), batch_ms[batch_ms.size() / 2], batch_ms.back());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Ledger write rate, spend-query time and retention batches"};
  app.require_subcommand(1);
  std::string location;
  int64_t rows = 200'000;
  int producers = 4, keys = 200, days = 90, repeat = 50;
  int64_t retention_batch = 1000;
  bool no_fill = false;
  auto* write = app.add_subcommand("write", "Rows/s through LedgerWriter");
  write->add_option("--ledger", location, "SQLite file or postgresql:// URL")->required();
  write->add_option("--rows", rows)->capture_default_str();
  write->add_option("--producers", producers)->capture_default_str();
  auto* query = app.add_subcommand("query", "Fill a ledger, then time spend queries and retention");
  query->add_option("--ledger", location, "SQLite file or postgresql:// URL")->required();
  query->add_option("--rows", rows)->capture_default_str();
  query->add_option("--keys", keys)->capture_default_str();
  query->add_option("--days", days)->capture_default_str();
  query->add_option("--repeat", repeat)->capture_default_str();
  query->add_flag("--no-fill", no_fill, "Query a ledger filled before");
  query->add_option("--retention-batch", retention_batch, "Rows per retention delete (tern serve uses 1000)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (write->parsed()) return write_bench(location, rows, producers);
  return query_bench(location, rows, keys, days, repeat, !no_fill, retention_batch);
}
