// `tern bench`: load-test OpenAI-compatible endpoints (docs/bench.md), and `tern bench profile`: derive a
// workload from a request log. This file only turns flags into a Workload and results into files; the
// work is in src/bench.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <boost/algorithm/string/predicate.hpp>

#include "bench/capacity.h"
#include "bench/metrics.h"
#include "bench/plan.h"
#include "bench/profile.h"
#include "bench/report.h"
#include "bench/runner.h"
#include "cli/commands.h"
#include "gguf/gguf_file.h"
#include "tokenizer/tokenizer.h"

namespace tern::cli {

namespace {

struct BenchOptions {
  std::vector<std::string> target_urls;
  std::vector<std::string> target_names;
  std::vector<std::string> prices;
  std::string model;
  std::optional<std::string> api;
  std::optional<std::string> workload_path;
  std::optional<int> concurrency;
  std::optional<double> rate;
  std::optional<double> burstiness;
  std::optional<int> requests;
  std::optional<double> duration_s;
  std::optional<std::string> warmup;
  std::optional<std::string> replay;
  std::optional<std::string> dataset;
  std::optional<int> max_prompt_tokens;
  double speedup = 1;
  bool replay_models = false;
  std::optional<std::string> sweep_concurrency, sweep_rates;
  std::optional<int> input_tokens, output_tokens;
  std::optional<std::string> slo;
  std::optional<uint64_t> seed;
  std::optional<double> timeout_s;
  std::optional<size_t> max_connections;
  std::optional<std::string> api_key_env;
  std::string ca_file;
  std::optional<std::string> tokenizer;
  bool ignore_eos = false;
  std::optional<std::string> json_path, html_path;
  bool include_requests = false;
  bool is_quiet = false;
  bool is_sequential = false;
  bool find_max_rate = false;
  bench::CapacityOptions capacity;
};

int report_error(const Error& error) {
  std::fprintf(stderr, "error: %s\n", error.message.c_str());
  return 1;
}

Result<std::vector<double>> parse_list(const std::string& text, std::string_view flag) {
  std::vector<double> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      values.push_back(std::stod(item));
    } catch (const std::exception&) {
      return fail("{}: '{}' is not a number", flag, item);
    }
  }
  if (values.empty()) return fail("{}: empty list", flag);
  return values;
}

/// The workload file (if any) with the flags applied over it.
Result<bench::Workload> build_workload(const BenchOptions& options) {
  bench::Workload workload;
  if (options.workload_path) {
    auto loaded = bench::load_workload_file(*options.workload_path);
    if (!loaded) return std::unexpected(loaded.error());
    workload = std::move(*loaded);
  }
  if (options.seed) workload.seed = *options.seed;
  if (options.input_tokens) workload.input_tokens = bench::LengthDistribution::fixed(*options.input_tokens);
  if (options.output_tokens) workload.output_tokens = bench::LengthDistribution::fixed(*options.output_tokens);
  if (options.timeout_s) workload.timeout_s = *options.timeout_s;
  if (options.ignore_eos) workload.ignore_eos = true;
  if (options.slo) {
    auto slo = bench::parse_slo_flag(*options.slo);
    if (!slo) return std::unexpected(slo.error());
    workload.slo = *slo;
  }
  const bool has_arrival_flags = options.concurrency || options.rate || options.sweep_concurrency || options.sweep_rates;
  if (options.dataset) {
    auto dataset = bench::load_dataset(*options.dataset);
    if (!dataset) return std::unexpected(dataset.error());
    workload.dataset = *dataset;
  }
  if (options.max_prompt_tokens) workload.max_prompt_tokens = *options.max_prompt_tokens;
  if (options.replay) {
    // The log's requests at their own times: one stage, replacing the workload's arrivals and prefixes.
    if (has_arrival_flags || options.find_max_rate) {
      return fail("--replay sends the log's own arrivals: it takes no --concurrency, --rate, sweep or --find-max-rate");
    }
    auto trace = bench::load_replay(*options.replay);
    if (!trace) return std::unexpected(trace.error());
    bench::StageSpec stage;
    stage.arrival.kind = bench::ArrivalSpec::Kind::kReplay;
    stage.arrival.speedup = options.speedup;
    stage.arrival.log_path = *options.replay;
    stage.num_requests = options.requests.value_or(0);
    stage.duration_s = options.duration_s.value_or(0);
    workload.stages = {stage};
    workload.replay = *trace;
    workload.prefix.reset();
    workload.replay_logged_models = options.replay_models;
  } else if (has_arrival_flags || workload.stages.empty()) {
    std::vector<bench::ArrivalSpec> arrivals;
    bench::ArrivalSpec base;
    if (options.rate || options.sweep_rates) {
      base.kind = options.burstiness && *options.burstiness != 1 ? bench::ArrivalSpec::Kind::kGamma : bench::ArrivalSpec::Kind::kPoisson;
      base.burstiness = options.burstiness.value_or(1);
    }
    if (options.sweep_concurrency || options.sweep_rates) {
      const bool is_concurrency = options.sweep_concurrency.has_value();
      auto values = parse_list(is_concurrency ? *options.sweep_concurrency : *options.sweep_rates,
                               is_concurrency ? "--sweep-concurrency" : "--sweep-rates");
      if (!values) return std::unexpected(values.error());
      for (double value : *values) {
        bench::ArrivalSpec arrival = base;
        if (is_concurrency) {
          arrival.kind = bench::ArrivalSpec::Kind::kConcurrency;
          arrival.concurrency = static_cast<int>(value);
        } else {
          arrival.rate = value;
        }
        arrivals.push_back(arrival);
      }
    } else if (options.rate) {
      base.rate = *options.rate;
      arrivals.push_back(base);
    } else {
      base.concurrency = options.concurrency.value_or(1);
      arrivals.push_back(base);
    }
    workload.stages.clear();
    for (const bench::ArrivalSpec& arrival : arrivals) {
      bench::StageSpec stage;
      stage.arrival = arrival;
      stage.num_requests = options.requests.value_or(options.duration_s ? 0 : 100);
      stage.duration_s = options.duration_s.value_or(0);
      if ((arrival.is_open_loop() && arrival.rate <= 0) || (!arrival.is_open_loop() && arrival.concurrency < 1)) {
        return fail("rates and concurrencies must be positive");
      }
      workload.stages.push_back(stage);
    }
  } else if (options.requests || options.duration_s) {
    for (bench::StageSpec& stage : workload.stages) {
      if (options.requests) stage.num_requests = *options.requests;
      if (options.duration_s) stage.duration_s = *options.duration_s;
    }
  }

  if (options.warmup) {
    // "N" requests or "Ns" seconds, before the first stage, at its load; excluded from the figures.
    std::string text = *options.warmup;
    const bool is_seconds = text.ends_with("s");
    if (is_seconds) text.pop_back();
    double amount = 0;
    try {
      size_t used = 0;
      amount = std::stod(text, &used);
      if (used != text.size()) throw std::invalid_argument(text);
    } catch (const std::exception&) {
      return fail("--warmup: expected a number of requests (20) or seconds (10s), got '{}'", *options.warmup);
    }
    if (amount <= 0 || (!is_seconds && amount != static_cast<int>(amount))) {
      return fail("--warmup: expected a positive number of requests (20) or seconds (10s), got '{}'", *options.warmup);
    }
    if (workload.stages.empty()) return fail("--warmup: the workload has no stage to warm up for");
    bench::StageSpec warmup;
    warmup.arrival = workload.stages.front().arrival;
    if (warmup.arrival.kind == bench::ArrivalSpec::Kind::kRamp) {  // warm up at the ramp's starting rate
      warmup.arrival.kind = bench::ArrivalSpec::Kind::kPoisson;
      warmup.arrival.rate = warmup.arrival.from_rate;
    } else if (warmup.arrival.kind == bench::ArrivalSpec::Kind::kReplay) {  // at the log's mean rate, sped up
      const bench::ReplayTrace& trace = *workload.replay;
      warmup.arrival.kind = bench::ArrivalSpec::Kind::kPoisson;
      warmup.arrival.rate = static_cast<double>(trace.requests.size()) / std::max(trace.span_s, 1e-3) * warmup.arrival.speedup;
    }
    warmup.num_requests = is_seconds ? 0 : static_cast<int>(amount);
    warmup.duration_s = is_seconds ? amount : 0;
    warmup.is_warmup = true;
    workload.stages.insert(workload.stages.begin(), warmup);
  }

  if (!options.target_urls.empty()) {
    workload.targets.clear();
    for (size_t i = 0; i < options.target_urls.size(); ++i) {
      bench::TargetSpec target;
      target.url = options.target_urls[i];
      target.name = i < options.target_names.size() ? options.target_names[i] : fmt::format("target{}", i + 1);
      if (options.target_urls.size() == 1 && options.target_names.empty()) target.name = "target";
      workload.targets.push_back(std::move(target));
    }
  }
  if (workload.targets.empty()) return fail("no target: give --target URL or 'targets' in the workload file");
  for (size_t i = 0; i < workload.targets.size(); ++i) {
    bench::TargetSpec& target = workload.targets[i];
    if (!options.model.empty() && (target.model.empty() || !options.target_urls.empty())) target.model = options.model;
    if (target.model.empty() && workload.models.empty()) return fail("target '{}': no model; give --model", target.name);
    if (options.api) {
      auto api = bench::parse_api_kind(*options.api);
      if (!api) return std::unexpected(api.error());
      target.api = *api;
      // A key the workload file gave for another API goes where this one takes it.
      for (auto& header : target.headers) {
        if (target.api == bench::ApiKind::kMessages && boost::algorithm::iequals(header.first, "authorization") &&
            header.second.starts_with("Bearer ")) {
          header = bench::api_key_header(target.api, header.second.substr(7));
        }
      }
    }
    if (options.max_connections) target.max_connections = *options.max_connections;
    if (!options.ca_file.empty()) target.ca_file = options.ca_file;
    if (options.api_key_env) {
      const char* key = std::getenv(options.api_key_env->c_str());
      if (key == nullptr) return fail("--api-key-env: {} is not set", *options.api_key_env);
      target.headers.push_back(bench::api_key_header(target.api, key));
    }
    if (auto checked = bench::check_cache_retention(target.api, workload.cache_retention); !checked) {
      return with_context(fmt::format("target '{}'", target.name), checked.error());
    }
    // Anthropic's API requires a version header; tern serve accepts it.
    const bool has_version = std::ranges::any_of(target.headers, [](const auto& header) {
      return boost::algorithm::iequals(header.first, "anthropic-version");
    });
    if (target.api == bench::ApiKind::kMessages && !has_version) target.headers.emplace_back("anthropic-version", "2023-06-01");
    if (i < options.prices.size()) {
      auto price = bench::parse_price_flag(options.prices[i]);
      if (!price) return std::unexpected(price.error());
      target.price = *price;
    }
  }
  if (options.prices.size() > workload.targets.size()) return fail("more --price flags than targets");
  return workload;
}

/// Client-side token counter: the model's tokenizer, or whitespace words with --tokenizer none.
Result<bench::PromptBuilder> make_prompt_builder(const std::string& tokenizer_arg, std::string& description) {
  if (tokenizer_arg == "none") {
    description = "whitespace words (--tokenizer none)";
    return bench::PromptBuilder::whitespace_words();
  }
  auto path = models::resolve_model(tokenizer_arg, stderr_progress());
  if (!path) return std::unexpected(path.error());
  auto file = gguf::GgufFile::open(*path);
  if (!file) return std::unexpected(file.error());
  auto tokenizer = tok::Tokenizer::from_gguf(*file);
  if (!tokenizer) return std::unexpected(tokenizer.error());
  description = fmt::format("{} tokenizer", tokenizer_arg);
  return bench::PromptBuilder::from_tokenizer(std::make_shared<const tok::Tokenizer>(std::move(*tokenizer)));
}

/// A redrawn bar on a terminal; a line every 5 s otherwise (logs stay short).
std::function<void(const bench::RunProgress&)> progress_printer() {
  const bool is_terminal = ::isatty(STDERR_FILENO) == 1;
  auto last_line = std::make_shared<double>(-1e9);
  auto last_stage = std::make_shared<size_t>(static_cast<size_t>(-1));
  return [is_terminal, last_line, last_stage](const bench::RunProgress& progress) {
    // Of the requests when the stage has a count, else of its duration.
    const double fraction = progress.num_planned > 0        ? static_cast<double>(progress.num_finished) / progress.num_planned
                            : progress.stage_duration_s > 0 ? std::min(1.0, progress.stage_elapsed_s / progress.stage_duration_s)
                                                            : 0;
    const double chunks_per_s = progress.stage_elapsed_s > 0 ? progress.num_chunks / progress.stage_elapsed_s : 0;
    const std::string planned = progress.num_planned > 0 ? fmt::format("/{}", progress.num_planned) : std::string();
    const std::string status = fmt::format("stage {}/{} {} {}{} done, {} failed, {} in flight, {} queued, {:.0f} events/s, {:.1f} s",
                                           progress.stage + 1, progress.num_stages, progress.stage_label, progress.num_finished,
                                           planned, progress.num_failed, progress.num_in_flight,
                                           progress.num_queued, chunks_per_s, progress.stage_elapsed_s);
    if (is_terminal) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(fraction * kWidth);
      if (*last_stage != progress.stage && *last_stage != static_cast<size_t>(-1)) std::fputc('\n', stderr);
      std::fprintf(stderr, "\r[%s%s] %s\x1b[K", std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(),
                   status.c_str());
    } else if (progress.stage_elapsed_s - *last_line >= 5 || *last_stage != progress.stage) {
      std::fprintf(stderr, "%s\n", status.c_str());
      *last_line = progress.stage_elapsed_s;
    }
    *last_stage = progress.stage;
    std::fflush(stderr);
  };
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm parts{};
  gmtime_r(&now, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

bool write_file(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out) {
    std::fprintf(stderr, "error: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

/// `--find-max-rate`: per target, probes of one Poisson stage each (after the warm-up, if any, on the
/// first probe), searched by bench::find_max_rate; the curve and the answer as text, JSON and HTML.
int run_capacity_search(const BenchOptions& options, const bench::Workload& workload, const bench::PromptBuilder& builder,
                        const std::string& tokenizer_description, const bench::RunOptions& run_options) {
  if (!workload.slo.is_set()) return report_error(Error{"--find-max-rate needs --slo (e.g. --slo ttft=500ms,itl=50ms)"});
  const std::string started_at = utc_now();
  const double probe_seconds = options.duration_s.value_or(20);
  std::optional<bench::StageSpec> warmup;
  if (!workload.stages.empty() && workload.stages.front().is_warmup) warmup = workload.stages.front();
  std::vector<bench::CapacityResult> results;
  for (const bench::TargetSpec& target : workload.targets) {
    bool is_first = true;
    auto probe = [&](double rate) -> std::optional<bench::CapacityProbe> {
      bench::Workload one = workload;
      bench::StageSpec stage;
      stage.arrival.kind = bench::ArrivalSpec::Kind::kPoisson;
      stage.arrival.rate = rate;
      stage.duration_s = probe_seconds;
      stage.num_requests = options.requests.value_or(0);
      one.stages = {stage};
      if (warmup && is_first) one.stages.insert(one.stages.begin(), *warmup);
      is_first = false;
      one.targets = {target};
      bench::Plan plan = bench::build_plan(one, builder);
      if (!options.is_quiet) std::fprintf(stderr, "%s: probing %.3g req/s for %.0f s\n", target.name.c_str(), rate, probe_seconds);
      auto result = bench::run_benchmark(plan, one.targets, run_options);
      if (!options.is_quiet && ::isatty(STDERR_FILENO) == 1) std::fputc('\n', stderr);
      if (!result) {
        std::fprintf(stderr, "error: %s\n", result.error().message.c_str());
        return std::nullopt;
      }
      if (result->interrupted) return std::nullopt;
      bench::count_client_tokens(*result, builder);
      const std::vector<bench::Metrics> metrics = bench::compute_metrics(*result, plan, one.targets, one.slo);
      if (metrics.empty()) return std::nullopt;
      const bench::CapacityProbe measured = bench::probe_from_metrics(rate, metrics.back(), options.capacity.goodput);
      if (!options.is_quiet) {
        std::fprintf(stderr, "%s: %.3g req/s: %.1f%% of %zu requests within the SLO (%s)\n", target.name.c_str(), rate,
                     measured.good_fraction * 100, measured.num_requests, measured.passed ? "pass" : "fail");
      }
      return measured;
    };
    bench::CapacityOptions capacity = options.capacity;
    capacity.start_rate = options.rate.value_or(capacity.start_rate);
    bench::CapacityResult result = bench::find_max_rate(probe, capacity);
    result.target = target.name;
    std::printf("%s", bench::capacity_text(result, capacity).c_str());
    results.push_back(std::move(result));
    if (results.back().is_interrupted) break;
  }
  const std::string machine = bench::client_machine();
  if (options.json_path) {
    nlohmann::json out = {{"schema", "tern.bench.capacity"}, {"schema_version", 1}, {"tool", "tern bench 0.1.0"},
                          {"started_at", started_at}, {"machine", machine}, {"tokenizer", tokenizer_description},
                          {"workload", bench::workload_to_json(workload)}, {"capacity", nlohmann::json::array()}};
    for (const auto& r : results) out["capacity"].push_back(bench::capacity_to_json(r, options.capacity));
    if (!write_file(*options.json_path, out.dump(2) + "\n")) return 1;
  }
  if (options.html_path && !write_file(*options.html_path, bench::capacity_html(results, options.capacity, workload, workload.slo, started_at, machine))) {
    return 1;
  }
  return std::any_of(results.begin(), results.end(), [](const auto& r) { return r.is_interrupted; }) ? 1 : 0;
}

int run_bench(const BenchOptions& options) {
  auto workload = build_workload(options);
  if (!workload) return report_error(workload.error());
  // The tokenizer: as given; else the benchmarked model's own when tern knows it (a catalog alias or a
  // .gguf path); else the default model's, whose counts the server's usage then corrects in the report.
  std::string tokenizer = std::string(models::kDefaultModel);
  if (options.tokenizer) {
    tokenizer = *options.tokenizer;
  } else if (models::find_in_catalog(options.model) != nullptr ||
             (options.model.ends_with(".gguf") && std::filesystem::exists(options.model))) {
    tokenizer = options.model;
  }
  std::string tokenizer_description;
  auto builder = make_prompt_builder(tokenizer, tokenizer_description);
  if (!builder) return report_error(builder.error());
  if (workload->dataset) {
    // Output lengths from the references, and the prompts within --max-prompt-tokens: said, not hidden.
    if (auto fitted = bench::fit_dataset(*workload->dataset, *builder, workload->max_prompt_tokens); !fitted) return report_error(fitted.error());
    const bench::Dataset& d = *workload->dataset;
    if (!options.is_quiet) {
      std::fprintf(stderr, "dataset %s: %zu conversations of %zu rows", d.path.c_str(), d.conversations.size(), d.num_rows);
      if (d.num_unusable > 0) std::fprintf(stderr, "; %zu rows without user text left out", d.num_unusable);
      if (d.num_dropped_long > 0 || d.num_cut > 0) {
        std::fprintf(stderr, "; over --max-prompt-tokens %d: %zu left out, %zu cut before the turn that passes it", d.max_prompt_tokens,
                     d.num_dropped_long, d.num_cut);
      }
      std::fputc('\n', stderr);
    }
  }
  bench::RunOptions run_options;
  run_options.timeout = std::chrono::milliseconds(static_cast<int64_t>(workload->timeout_s * 1000));
  run_options.body.ignore_eos = workload->ignore_eos;
  run_options.body.temperature = workload->temperature;
  run_options.body.cache_retention = workload->cache_retention;
  if (!options.is_quiet) run_options.on_progress = progress_printer();
  run_options.stop_on_signals = true;  // Ctrl-C reports what was measured so far
  if (options.find_max_rate) return run_capacity_search(options, *workload, *builder, tokenizer_description, run_options);
  // Requests are generated as the run reaches them (bench/plan.h): start-up does not grow with --requests.
  bench::Plan plan = bench::build_plan(*workload, *builder);
  if (!options.is_quiet) {
    size_t max_requests = 0;
    bool is_open_ended = false;
    for (const auto& stage : plan.stages) {
      max_requests += stage->max_requests();
      is_open_ended = is_open_ended || stage->max_requests() == 0;
    }
    std::fprintf(stderr, "%s in %zu stage(s) x %zu target(s), prompts from the %s\n",
                 is_open_ended ? "requests until each stage's duration ends" : fmt::format("up to {} requests", max_requests).c_str(),
                 plan.stages.size(), workload->targets.size(), tokenizer_description.c_str());
  }
  const std::string started_at = utc_now();
  const auto announce = [&](size_t target) {
    if (!options.is_quiet) {
      std::fprintf(stderr, "%starget %zu/%zu: %s (sequential)\n", target > 0 && ::isatty(STDERR_FILENO) == 1 ? "\n" : "",
                   target + 1, workload->targets.size(), workload->targets[target].name.c_str());
    }
  };
  auto result = options.is_sequential ? bench::run_benchmark_sequential(plan, workload->targets, run_options, announce)
                                      : bench::run_benchmark(plan, workload->targets, run_options);
  if (!options.is_quiet && ::isatty(STDERR_FILENO) == 1) std::fputc('\n', stderr);
  if (!result) return report_error(result.error());
  bench::count_client_tokens(*result, *builder);
  const std::vector<bench::Metrics> metrics = bench::compute_metrics(*result, plan, workload->targets, workload->slo);
  const bench::ReportInput input{*workload, plan, workload->targets, *result, metrics, tokenizer_description, started_at,
                                 bench::client_machine()};
  std::printf("%s", bench::report_text(input).c_str());
  if (options.json_path && !write_file(*options.json_path, bench::report_json(input, options.include_requests).dump(2) + "\n")) return 1;
  if (options.html_path && !write_file(*options.html_path, bench::report_html(input))) return 1;
  size_t num_ok = 0;
  for (const bench::Metrics& one : metrics) num_ok += one.num_ok;
  return num_ok > 0 ? 0 : 1;  // a run where nothing succeeded is a failed run, for scripts
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto* command = app.add_subcommand("bench", "Load-test OpenAI-compatible endpoints: latency percentiles, goodput, effective cost");
  auto options = std::make_shared<BenchOptions>();
  command->add_option("--target", options->target_urls, "Base URL of an endpoint, e.g. http://127.0.0.1:8000/v1 (repeat for side by side)");
  command->add_option("--name", options->target_names, "Name of each --target, in order");
  command->add_option("--model", options->model, "Model name sent in requests");
  command->add_option("--api", options->api, "chat (default), completions (OpenAI) or messages (Anthropic)");
  command->add_option("--workload", options->workload_path, "Workload file (JSON, docs/bench.md); flags override it");
  command->add_option("-c,--concurrency", options->concurrency, "Closed loop: requests in flight per target");
  command->add_option("--rate", options->rate, "Open loop: Poisson arrivals per second");
  command->add_option("--burstiness", options->burstiness, "Gamma arrivals with this shape (1 = Poisson, < 1 burstier)");
  command->add_option("-n,--requests", options->requests, "Requests per stage per target (default 100)");
  command->add_option("--duration", options->duration_s, "Seconds per stage (open loop: arrivals stop; closed loop: no new requests)");
  command->add_option("--dataset", options->dataset,
                      "Prompts with real text: ShareGPT or OpenAI-messages conversations, or {\"prompt\": ...} rows (JSON array or JSONL); "
                      "conversations are sent turn by turn as sessions");
  command->add_option("--max-prompt-tokens", options->max_prompt_tokens,
                      "With --dataset: leave out turns whose prompt would pass this many tokens (reported, never truncated)")
      ->check(CLI::PositiveNumber);
  command->add_option("--replay", options->replay,
                      "Send a request log's requests (tern serve --request-log) at their own arrival times, with their lengths and prefix reuse");
  command->add_option("--speedup", options->speedup, "With --replay: divide the log's arrival times by this (default 1)")
      ->check(CLI::PositiveNumber);
  command->add_flag("--replay-models", options->replay_models, "With --replay: send each logged model name instead of --model");
  command->add_option("--warmup", options->warmup,
                      "Before the first stage, at its load: N requests (20) or seconds (10s) per target, excluded from every figure");
  command->add_option("--sweep-concurrency", options->sweep_concurrency, "Stages at these concurrencies, e.g. 1,2,4,8");
  command->add_option("--sweep-rates", options->sweep_rates, "Stages at these Poisson rates, e.g. 1,2,4,8");
  command->add_option("--input-tokens", options->input_tokens, "Fixed prompt length in tokens (default 256)");
  command->add_option("--output-tokens", options->output_tokens, "Fixed max_tokens (default 128)");
  command->add_option("--slo", options->slo, "Goodput objectives, e.g. ttft=500ms,tpot=50ms,itl=100ms,e2e=10s");
  command->add_option("--price", options->prices,
                      "Price of each target in order: in=3,cached=0.3,write=3.75,out=15 (USD per 1M tokens) or hourly=2.5");
  command->add_option("--tokenizer", options->tokenizer,
                      "Model (alias or .gguf) whose tokenizer sizes prompts; 'none' for whitespace words (default: --model "
                      "if tern knows it, else smollm2-135m)");
  command->add_option("--seed", options->seed, "Random seed of the workload (default 42)");
  command->add_option("--timeout", options->timeout_s, "Seconds before a request counts as timed out (default 600)");
  command->add_option("--max-connections", options->max_connections, "Open connections per target (default 4096); more requests queue");
  command->add_option("--api-key-env", options->api_key_env, "Environment variable holding the API key (a bearer token; x-api-key for messages)");
  command->add_option("--ca-file", options->ca_file, "https targets: trust this PEM CA bundle instead of the system store");
  command->add_flag("--ignore-eos", options->ignore_eos, "Ask the server to generate exactly max_tokens (vLLM/SGLang/llama.cpp extension)");
  command->add_option("--json", options->json_path, "Write the JSON report here");
  command->add_option("--html", options->html_path, "Write the self-contained HTML report here");
  command->add_flag("--json-requests", options->include_requests, "Include every request in the JSON report");
  command->add_flag("-q,--quiet", options->is_quiet, "No progress on stderr");
  command->add_flag("--find-max-rate", options->find_max_rate,
                    "Capacity search: the highest Poisson rate (per target, each alone) at which --goodput of requests meet --slo; "
                    "--rate is the first probe (default 1), --duration each probe's length (default 20)");
  command->add_option("--goodput", options->capacity.goodput, "With --find-max-rate: the share of requests that must meet the SLO (default 0.95)")
      ->check(CLI::Range(0.01, 1.0));
  command->add_option("--max-probes", options->capacity.max_probes, "With --find-max-rate: probes per target at most (default 12)")
      ->check(CLI::Range(1, 100));
  command->add_option("--precision", options->capacity.precision,
                      "With --find-max-rate: stop once the lowest failing rate is within this factor of the highest passing one (default 0.1)")
      ->check(CLI::Range(0.01, 10.0));
  command->add_flag("--sequential", options->is_sequential,
                    "Run the targets one after another, each alone (servers sharing this machine's cores), instead of side by side");

  auto* profile = command->add_subcommand("profile", "Derive a workload file from a request log (JSONL)");
  struct ProfileArgs {
    std::string log_path;
    std::optional<std::string> output_path;
    bench::ProfileOptions options;
  };
  auto profile_args = std::make_shared<ProfileArgs>();
  profile->add_option("log", profile_args->log_path, "Request log, one JSON object per line (docs/bench.md)")->required();
  profile->add_option("-o,--output", profile_args->output_path, "Write the workload here (default: stdout)");
  profile->add_option("--bucket", profile_args->options.bucket_s, "QPS bucket width in seconds (default: span / 24)");
  profile->add_flag("--flat", profile_args->options.is_flat, "One stage at the mean rate instead of one per bucket");
  profile->add_flag("--empirical", profile_args->options.is_empirical, "Token lengths drawn from the log instead of a lognormal fit");

  return [command, profile, options, profile_args]() {
    if (profile->parsed()) {
      auto workload = bench::profile_log(profile_args->log_path, profile_args->options);
      if (!workload) return report_error(workload.error());
      const std::string text = workload->dump(2) + "\n";
      if (profile_args->output_path) return write_file(*profile_args->output_path, text) ? 0 : 1;
      std::printf("%s", text.c_str());
      return 0;
    }
    return run_bench(*options);
  };
}

}  // namespace tern::cli
