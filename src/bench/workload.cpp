#include "bench/workload.h"

#include "bench/jsonl.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace tern::bench {

using nlohmann::json;

namespace {

/// Reads an optional number field; an error names the field when it is present but not a number.
Result<std::optional<double>> number_field(const json& object, const char* key) {
  auto found = object.find(key);
  if (found == object.end() || found->is_null()) return std::optional<double>{};
  if (!found->is_number()) return fail("'{}' must be a number, got {}", key, found->dump());
  return std::optional<double>(found->get<double>());
}

Result<double> required_number(const json& object, const char* key, std::string_view where) {
  auto value = number_field(object, key);
  if (!value) return std::unexpected(value.error());
  if (!*value) return fail("{}: missing '{}'", where, key);
  return **value;
}

Result<std::vector<int>> load_dataset_field(const std::string& path, const std::string& field) {
  std::vector<int> values;
  const std::string what = fmt::format("dataset '{}'", path);
  auto ok = for_each_jsonl_object(path, what, [&](const json& row, size_t line_number) -> Result<void> {
    auto value = row.find(field);
    if (value == row.end() || !value->is_number()) return fail("{} line {}: no numeric field '{}'", what, line_number, field);
    values.push_back(static_cast<int>(std::lround(value->get<double>())));
    return {};
  });
  if (!ok) return std::unexpected(ok.error());
  if (values.empty()) return fail("dataset '{}': no rows", path);
  return values;
}

}  // namespace

LengthDistribution LengthDistribution::fixed(int tokens) {
  LengthDistribution distribution;
  distribution.value = tokens;
  return distribution;
}

int LengthDistribution::sample(std::mt19937_64& rng) const {
  double drawn = value;
  switch (kind) {
    case Kind::kFixed: break;
    case Kind::kUniform: drawn = std::uniform_real_distribution<double>(min, std::nextafter(max + 1, 0.0))(rng);
      drawn = std::floor(drawn);
      break;
    case Kind::kNormal: drawn = std::normal_distribution<double>(mean, stdev)(rng); break;
    case Kind::kLognormal: drawn = std::lognormal_distribution<double>(std::log(median), sigma)(rng); break;
    case Kind::kDataset:
      drawn = dataset_values[std::uniform_int_distribution<size_t>(0, dataset_values.size() - 1)(rng)];
      break;
  }
  const double clamped = std::clamp(std::round(drawn), std::max(1.0, min), std::max(1.0, max));
  return static_cast<int>(clamped);
}

std::string ArrivalSpec::label() const {
  switch (kind) {
    case Kind::kConcurrency: return fmt::format("concurrency={}", concurrency);
    case Kind::kPoisson: return fmt::format("poisson@{:g}/s", rate);
    case Kind::kGamma: return fmt::format("gamma@{:g}/s,b={:g}", rate, burstiness);
    case Kind::kConstant: return fmt::format("constant@{:g}/s", rate);
    case Kind::kRamp: return fmt::format("ramp@{:g}->{:g}/s", from_rate, to_rate);
    case Kind::kReplay: return fmt::format("replay x{:g}", speedup);
  }
  return "?";
}

double ArrivalSpec::load_value() const {
  switch (kind) {
    case Kind::kConcurrency: return concurrency;
    case Kind::kRamp: return (from_rate + to_rate) / 2;
    case Kind::kReplay: return speedup;
    default: return rate;
  }
}

Result<LengthDistribution> parse_length_distribution(const json& spec, const std::string& base_dir) {
  LengthDistribution out;
  if (spec.is_number()) return LengthDistribution::fixed(static_cast<int>(std::lround(spec.get<double>())));
  if (!spec.is_object()) return fail("a length distribution is a number or an object, got {}", spec.dump());
  const std::string kind = spec.value("dist", "fixed");
  auto min = number_field(spec, "min");
  auto max = number_field(spec, "max");
  if (!min) return std::unexpected(min.error());
  if (!max) return std::unexpected(max.error());
  if (*min) out.min = **min;
  if (*max) out.max = **max;
  if (kind == "fixed") {
    out.kind = LengthDistribution::Kind::kFixed;
    auto value = required_number(spec, "value", "fixed distribution");
    if (!value) return std::unexpected(value.error());
    out.value = *value;
  } else if (kind == "uniform") {
    out.kind = LengthDistribution::Kind::kUniform;
    if (!*min || !*max) return fail("uniform distribution needs 'min' and 'max'");
    if (out.min > out.max) return fail("uniform distribution: min {} > max {}", out.min, out.max);
  } else if (kind == "normal") {
    out.kind = LengthDistribution::Kind::kNormal;
    auto mean = required_number(spec, "mean", "normal distribution");
    auto stdev = required_number(spec, "stdev", "normal distribution");
    if (!mean) return std::unexpected(mean.error());
    if (!stdev) return std::unexpected(stdev.error());
    out.mean = *mean;
    out.stdev = *stdev;
  } else if (kind == "lognormal") {
    out.kind = LengthDistribution::Kind::kLognormal;
    auto median = required_number(spec, "median", "lognormal distribution");
    auto sigma = required_number(spec, "sigma", "lognormal distribution");
    if (!median) return std::unexpected(median.error());
    if (!sigma) return std::unexpected(sigma.error());
    if (*median <= 0) return fail("lognormal distribution: median must be > 0");
    out.median = *median;
    out.sigma = *sigma;
  } else if (kind == "dataset") {
    out.kind = LengthDistribution::Kind::kDataset;
    if (!spec.contains("path") || !spec.contains("field")) return fail("dataset distribution needs 'path' and 'field'");
    std::filesystem::path path = spec["path"].get<std::string>();
    if (path.is_relative() && !base_dir.empty()) path = std::filesystem::path(base_dir) / path;
    out.dataset_path = spec["path"].get<std::string>();
    out.dataset_field = spec["field"].get<std::string>();
    auto values = load_dataset_field(path.string(), out.dataset_field);
    if (!values) return std::unexpected(values.error());
    out.dataset_values = std::move(*values);
  } else {
    return fail("unknown distribution '{}': expected fixed, uniform, normal, lognormal or dataset", kind);
  }
  return out;
}

Result<ArrivalSpec> parse_arrival(const json& spec) {
  if (!spec.is_object()) return fail("an arrival is an object, got {}", spec.dump());
  ArrivalSpec out;
  const std::string kind = spec.value("type", "");
  auto number = [&](const char* key, double& into, bool required) -> Result<void> {
    auto value = number_field(spec, key);
    if (!value) return std::unexpected(value.error());
    if (*value) {
      into = **value;
    } else if (required) {
      return fail("arrival '{}' needs '{}'", kind, key);
    }
    return {};
  };
  Result<void> status;
  if (kind == "concurrency") {
    out.kind = ArrivalSpec::Kind::kConcurrency;
    double concurrency = 1;
    status = number("concurrency", concurrency, true);
    out.concurrency = static_cast<int>(concurrency);
    if (status && out.concurrency < 1) return fail("concurrency must be >= 1");
  } else if (kind == "poisson" || kind == "constant") {
    out.kind = kind == "poisson" ? ArrivalSpec::Kind::kPoisson : ArrivalSpec::Kind::kConstant;
    status = number("rate", out.rate, true);
  } else if (kind == "gamma") {
    out.kind = ArrivalSpec::Kind::kGamma;
    status = number("rate", out.rate, true);
    if (status) status = number("burstiness", out.burstiness, true);
    if (status && out.burstiness <= 0) return fail("burstiness must be > 0");
  } else if (kind == "ramp") {
    out.kind = ArrivalSpec::Kind::kRamp;
    status = number("from_rate", out.from_rate, true);
    if (status) status = number("to_rate", out.to_rate, true);
    if (status && (out.from_rate < 0 || out.to_rate < 0 || out.from_rate + out.to_rate <= 0)) {
      return fail("ramp rates must be >= 0 and not both 0");
    }
    out.rate = (out.from_rate + out.to_rate) / 2;
  } else if (kind == "replay") {
    out.kind = ArrivalSpec::Kind::kReplay;
    if (!spec.contains("log") || !spec["log"].is_string()) return fail("arrival 'replay' needs 'log' (a request log, JSONL)");
    out.log_path = spec["log"].get<std::string>();
    status = number("speedup", out.speedup, false);
    if (status && !(out.speedup > 0)) return fail("replay 'speedup' must be > 0");
  } else {
    return fail("unknown arrival type '{}': expected concurrency, poisson, gamma, constant, ramp or replay", kind);
  }
  if (!status) return std::unexpected(status.error());
  if (out.is_open_loop() && out.kind != ArrivalSpec::Kind::kRamp && out.rate <= 0) return fail("rate must be > 0");
  return out;
}

Result<PriceTable> parse_price(const json& spec) {
  PriceTable out;
  if (!spec.is_object()) return fail("a price table is an object, got {}", spec.dump());
  std::pair<const char*, std::optional<double>*> fields[] = {
      {"input_per_mtok", &out.input_per_mtok},
      {"cached_input_per_mtok", &out.cached_input_per_mtok},
      {"cache_write_per_mtok", &out.cache_write_per_mtok},
      {"cache_write_1h_per_mtok", &out.cache_write_1h_per_mtok},
      {"output_per_mtok", &out.output_per_mtok},
      {"hourly_usd", &out.hourly_usd}};
  for (auto& [key, into] : fields) {
    auto value = number_field(spec, key);
    if (!value) return std::unexpected(value.error());
    *into = *value;
  }
  return out;
}

namespace {

/// Splits "a=1,b=2" into pairs; a bare word without '=' is an error.
Result<std::vector<std::pair<std::string, std::string>>> split_pairs(std::string_view text, std::string_view what) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (item.empty()) continue;
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) return fail("{}: '{}' is not key=value", what, item);
    pairs.emplace_back(std::string(item.substr(0, equals)), std::string(item.substr(equals + 1)));
  }
  return pairs;
}

Result<double> parse_double(std::string_view text, std::string_view what) {
  double value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size()) return fail("{}: '{}' is not a number", what, text);
  return value;
}

}  // namespace

Result<PriceTable> parse_price_flag(std::string_view text) {
  auto pairs = split_pairs(text, "--price");
  if (!pairs) return std::unexpected(pairs.error());
  PriceTable out;
  for (const auto& [key, value_text] : *pairs) {
    auto value = parse_double(value_text, "--price");
    if (!value) return std::unexpected(value.error());
    if (key == "in" || key == "input") out.input_per_mtok = *value;
    else if (key == "cached") out.cached_input_per_mtok = *value;
    else if (key == "write" || key == "cache_write") out.cache_write_per_mtok = *value;
    else if (key == "write_1h" || key == "cache_write_1h") out.cache_write_1h_per_mtok = *value;
    else if (key == "out" || key == "output") out.output_per_mtok = *value;
    else if (key == "hourly") out.hourly_usd = *value;
    else return fail("--price: unknown key '{}' (in, cached, write, write_1h, out, hourly)", key);
  }
  return out;
}

Result<SloSpec> parse_slo_flag(std::string_view text) {
  auto pairs = split_pairs(text, "--slo");
  if (!pairs) return std::unexpected(pairs.error());
  SloSpec out;
  for (const auto& [key, raw] : *pairs) {
    std::string_view value_text = raw;
    double scale_to_ms = 1;
    if (value_text.ends_with("ms")) {
      value_text.remove_suffix(2);
    } else if (value_text.ends_with("us")) {
      value_text.remove_suffix(2);
      scale_to_ms = 1e-3;
    } else if (value_text.ends_with("s")) {
      value_text.remove_suffix(1);
      scale_to_ms = 1000;
    }
    auto value = parse_double(value_text, "--slo");
    if (!value) return std::unexpected(value.error());
    const double ms = *value * scale_to_ms;
    if (key == "ttft") out.ttft_ms = ms;
    else if (key == "tpot") out.tpot_ms = ms;
    else if (key == "itl") out.itl_ms = ms;
    else if (key == "e2e") out.e2e_ms = ms;
    else return fail("--slo: unknown objective '{}' (ttft, tpot, itl, e2e)", key);
  }
  return out;
}

namespace {

Result<StageSpec> parse_stage(const json& spec, const json& arrival_spec) {
  StageSpec stage;
  auto arrival = parse_arrival(arrival_spec);
  if (!arrival) return with_context("arrival", arrival.error());
  stage.arrival = *arrival;
  auto requests = number_field(spec, "requests");
  auto duration = number_field(spec, "duration_s");
  if (!requests) return std::unexpected(requests.error());
  if (!duration) return std::unexpected(duration.error());
  stage.num_requests = requests->value_or(0);
  stage.duration_s = duration->value_or(0);
  // A replay is bounded by its log.
  if (stage.num_requests <= 0 && stage.duration_s <= 0 && stage.arrival.kind != ArrivalSpec::Kind::kReplay) {
    return fail("a stage needs 'requests' or 'duration_s'");
  }
  if (stage.arrival.kind == ArrivalSpec::Kind::kRamp && stage.duration_s <= 0) return fail("a ramp needs 'duration_s'");
  if (spec.contains("warmup")) {
    if (!spec["warmup"].is_boolean()) return fail("'warmup' must be true or false");
    stage.is_warmup = spec["warmup"].get<bool>();
  }
  return stage;
}

json distribution_to_json(const LengthDistribution& distribution) {
  json out;
  switch (distribution.kind) {
    case LengthDistribution::Kind::kFixed: out = {{"dist", "fixed"}, {"value", distribution.value}}; break;
    case LengthDistribution::Kind::kUniform: out = {{"dist", "uniform"}}; break;
    case LengthDistribution::Kind::kNormal:
      out = {{"dist", "normal"}, {"mean", distribution.mean}, {"stdev", distribution.stdev}};
      break;
    case LengthDistribution::Kind::kLognormal:
      out = {{"dist", "lognormal"}, {"median", distribution.median}, {"sigma", distribution.sigma}};
      break;
    case LengthDistribution::Kind::kDataset:
      out = {{"dist", "dataset"}, {"path", distribution.dataset_path}, {"field", distribution.dataset_field}};
      break;
  }
  if (distribution.min > 1 || distribution.kind == LengthDistribution::Kind::kUniform) out["min"] = distribution.min;
  if (distribution.max < 1e9) out["max"] = distribution.max;
  return out;
}

json arrival_to_json(const ArrivalSpec& arrival) {
  switch (arrival.kind) {
    case ArrivalSpec::Kind::kConcurrency: return {{"type", "concurrency"}, {"concurrency", arrival.concurrency}};
    case ArrivalSpec::Kind::kPoisson: return {{"type", "poisson"}, {"rate", arrival.rate}};
    case ArrivalSpec::Kind::kConstant: return {{"type", "constant"}, {"rate", arrival.rate}};
    case ArrivalSpec::Kind::kGamma:
      return {{"type", "gamma"}, {"rate", arrival.rate}, {"burstiness", arrival.burstiness}};
    case ArrivalSpec::Kind::kRamp:
      return {{"type", "ramp"}, {"from_rate", arrival.from_rate}, {"to_rate", arrival.to_rate}};
    case ArrivalSpec::Kind::kReplay: return {{"type", "replay"}, {"log", arrival.log_path}, {"speedup", arrival.speedup}};
  }
  return {};
}

}  // namespace

std::pair<std::string, std::string> api_key_header(ApiKind api, std::string_view key) {
  if (api == ApiKind::kMessages) return {"x-api-key", std::string(key)};
  return {"Authorization", fmt::format("Bearer {}", key)};
}

json price_to_json(const PriceTable& price) {
  json out = json::object();
  if (price.input_per_mtok) out["input_per_mtok"] = *price.input_per_mtok;
  if (price.cached_input_per_mtok) out["cached_input_per_mtok"] = *price.cached_input_per_mtok;
  if (price.cache_write_per_mtok) out["cache_write_per_mtok"] = *price.cache_write_per_mtok;
  if (price.cache_write_1h_per_mtok) out["cache_write_1h_per_mtok"] = *price.cache_write_1h_per_mtok;
  if (price.output_per_mtok) out["output_per_mtok"] = *price.output_per_mtok;
  if (price.hourly_usd) out["hourly_usd"] = *price.hourly_usd;
  return out;
}

Result<Workload> parse_workload(const json& spec, const std::string& base_dir) {
  if (!spec.is_object()) return fail("a workload is a JSON object");
  Workload out;
  try {
    out.seed = spec.value("seed", out.seed);
    for (const char* key : {"input_tokens", "output_tokens"}) {
      if (!spec.contains(key)) continue;
      auto distribution = parse_length_distribution(spec[key], base_dir);
      if (!distribution) return with_context(key, distribution.error());
      (std::string_view(key) == "input_tokens" ? out.input_tokens : out.output_tokens) = *distribution;
    }
    if (spec.contains("stages")) {
      for (const json& stage_spec : spec["stages"]) {
        auto stage = parse_stage(stage_spec, stage_spec.value("arrival", json::object()));
        if (!stage) return with_context("stages", stage.error());
        out.stages.push_back(*stage);
      }
    } else if (spec.contains("sweep")) {
      const json& sweep = spec["sweep"];
      const std::string type = sweep.value("type", "");
      if (!sweep.contains("values") || !sweep["values"].is_array() || sweep["values"].empty()) {
        return fail("sweep: 'values' must be a non-empty array");
      }
      for (const json& value : sweep["values"]) {
        json arrival = {{"type", type}};
        arrival[type == "concurrency" ? "concurrency" : "rate"] = value;
        if (sweep.contains("burstiness")) arrival["burstiness"] = sweep["burstiness"];
        json stage_spec = json::object();
        if (sweep.contains("requests_per_stage")) stage_spec["requests"] = sweep["requests_per_stage"];
        if (sweep.contains("duration_s")) stage_spec["duration_s"] = sweep["duration_s"];
        auto stage = parse_stage(stage_spec, arrival);
        if (!stage) return with_context("sweep", stage.error());
        out.stages.push_back(*stage);
      }
    } else if (spec.contains("arrival")) {
      auto stage = parse_stage(spec, spec["arrival"]);
      if (!stage) return std::unexpected(stage.error());
      out.stages.push_back(*stage);
    }
    // A replay stage reads its log now: a run never stops half-way on a bad line.
    for (StageSpec& stage : out.stages) {
      if (stage.arrival.kind != ArrivalSpec::Kind::kReplay) continue;
      std::filesystem::path log = stage.arrival.log_path;
      if (log.is_relative() && !base_dir.empty()) log = std::filesystem::path(base_dir) / log;
      if (out.replay && out.replay->path != log.string()) return fail("a workload replays one request log, not several");
      if (!out.replay) {
        auto trace = load_replay(log.string());
        if (!trace) return std::unexpected(trace.error());
        out.replay = *trace;
      }
      stage.arrival.log_path = log.string();
    }
    out.replay_logged_models = spec.value("replay_logged_models", false);
    if (spec.contains("dataset")) {
      const json& dataset = spec["dataset"];
      if (!dataset.is_object() || !dataset.contains("path") || !dataset["path"].is_string()) {
        return fail("dataset: expected {{\"path\": FILE, \"max_prompt_tokens\"?: N}}");
      }
      std::filesystem::path path = dataset["path"].get<std::string>();
      if (path.is_relative() && !base_dir.empty()) path = std::filesystem::path(base_dir) / path;
      auto loaded = load_dataset(path.string());
      if (!loaded) return std::unexpected(loaded.error());
      out.dataset = *loaded;
      out.max_prompt_tokens = dataset.value("max_prompt_tokens", 0);
      if (out.max_prompt_tokens < 0) return fail("dataset: 'max_prompt_tokens' must be >= 0");
    }
    if (spec.contains("prefix")) {
      const json& prefix = spec["prefix"];
      PrefixSpec parsed;
      parsed.num_groups = prefix.value("groups", 1);
      parsed.length_tokens = prefix.value("length_tokens", 0);
      parsed.zipf_exponent = prefix.value("zipf_s", 0.0);
      parsed.fraction = prefix.value("fraction", 1.0);
      if (parsed.num_groups < 1 || parsed.length_tokens < 1) return fail("prefix: 'groups' and 'length_tokens' must be >= 1");
      if (parsed.fraction < 0 || parsed.fraction > 1) return fail("prefix: 'fraction' must be in [0, 1]");
      out.prefix = parsed;
    }
    if (spec.contains("sessions")) {
      out.sessions.num_turns = spec["sessions"].value("turns", 1);
      out.sessions.think_time_ms = spec["sessions"].value("think_time_ms", 0.0);
      out.sessions.think_time_max_ms = spec["sessions"].value("think_time_max_ms", 0.0);
      if (out.sessions.num_turns < 1) return fail("sessions: 'turns' must be >= 1");
      if (out.sessions.think_time_ms < 0 || out.sessions.think_time_max_ms < 0) return fail("sessions: think times must be >= 0");
    }
    if (spec.contains("models")) {
      for (const json& entry : spec["models"]) {
        ModelWeight weight{entry.at("model").get<std::string>(), entry.value("weight", 1.0)};
        if (weight.weight <= 0) return fail("models: weight of '{}' must be > 0", weight.model);
        out.models.push_back(weight);
      }
    }
    out.ignore_eos = spec.value("ignore_eos", false);
    if (spec.contains("temperature")) out.temperature = spec["temperature"].get<double>();
    out.cache_retention = spec.value("cache_retention", "");
    // Which API takes it is checked per target (check_cache_retention); here, that some API does.
    if (!check_cache_retention(ApiKind::kChat, out.cache_retention) && !check_cache_retention(ApiKind::kMessages, out.cache_retention)) {
      return fail("cache_retention: must be \"24h\" or \"in_memory\" (OpenAI targets), \"5m\" or \"1h\" (messages targets); got \"{}\"",
                  out.cache_retention);
    }
    out.timeout_s = spec.value("timeout_s", out.timeout_s);
    if (spec.contains("slo")) {
      const json& slo = spec["slo"];
      if (slo.contains("ttft_ms")) out.slo.ttft_ms = slo["ttft_ms"].get<double>();
      if (slo.contains("tpot_ms")) out.slo.tpot_ms = slo["tpot_ms"].get<double>();
      if (slo.contains("itl_ms")) out.slo.itl_ms = slo["itl_ms"].get<double>();
      if (slo.contains("e2e_ms")) out.slo.e2e_ms = slo["e2e_ms"].get<double>();
    }
    if (spec.contains("targets")) {
      for (const json& entry : spec["targets"]) {
        TargetSpec target;
        target.url = entry.at("url").get<std::string>();
        target.name = entry.value("name", target.url);
        target.model = entry.value("model", "");
        auto api = parse_api_kind(entry.value("api", "chat"));
        if (!api) return with_context("targets", api.error());
        target.api = *api;
        target.max_connections = entry.value("max_connections", target.max_connections);
        if (entry.contains("headers")) {
          for (const auto& [name, value] : entry["headers"].items()) target.headers.emplace_back(name, value.get<std::string>());
        }
        if (entry.contains("api_key_env")) {
          const char* key = std::getenv(entry["api_key_env"].get<std::string>().c_str());
          if (key == nullptr) return fail("targets: environment variable {} is not set", entry["api_key_env"].dump());
          target.headers.push_back(api_key_header(target.api, key));
        }
        if (entry.contains("price")) {
          auto price = parse_price(entry["price"]);
          if (!price) return with_context(fmt::format("target '{}' price", target.name), price.error());
          target.price = *price;
        }
        out.targets.push_back(std::move(target));
      }
    }
  } catch (const json::exception& error) {  // a field of the wrong type, caught here so it stays a value
    return fail("workload: {}", error.what());
  }
  return out;
}

Result<Workload> load_workload_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail("workload '{}': cannot open", path);
  json spec = json::parse(in, nullptr, false);
  if (spec.is_discarded()) return fail("workload '{}': not valid JSON", path);
  auto workload = parse_workload(spec, std::filesystem::path(path).parent_path().string());
  if (!workload) return with_context(fmt::format("workload '{}'", path), workload.error());
  return workload;
}

std::string describe_workload(const Workload& workload) {
  auto lengths = [](const LengthDistribution& d) {
    switch (d.kind) {
      case LengthDistribution::Kind::kFixed: return fmt::format("{:g}", d.value);
      case LengthDistribution::Kind::kUniform: return fmt::format("uniform {:g}-{:g}", d.min, d.max);
      case LengthDistribution::Kind::kNormal: return fmt::format("normal, mean {:g}", d.mean);
      case LengthDistribution::Kind::kLognormal: return fmt::format("lognormal, median {:g}", d.median);
      case LengthDistribution::Kind::kDataset: return fmt::format("from {}", d.dataset_path);
    }
    return std::string("?");
  };
  std::string stages;
  for (const StageSpec& stage : workload.stages) {
    std::string bound;
    if (stage.num_requests > 0) bound = fmt::format("{} requests", stage.num_requests);
    if (stage.duration_s > 0) bound += fmt::format("{}{:g} s", bound.empty() ? "" : ", at most ", stage.duration_s);
    stages += fmt::format("{}{}{}{}", stages.empty() ? "" : "; ", stage.is_warmup ? "warm-up " : "", stage.arrival.label(),
                          bound.empty() ? "" : " (" + bound + ")");
  }
  std::string out = fmt::format("{} stage(s): {}. ", workload.stages.size(), stages);
  if (workload.replay) {
    out += fmt::format("Replay of the request log {} ({} requests over {:.0f} s, {} prefix groups).", workload.replay->path,
                       workload.replay->requests.size(), workload.replay->span_s, workload.replay->prefix_tokens.size());
  } else if (workload.dataset) {
    out += fmt::format("Prompts from the dataset {} ({} conversations{}).", workload.dataset->path, workload.dataset->conversations.size(),
                       workload.max_prompt_tokens > 0 ? fmt::format(", prompts within {} tokens", workload.max_prompt_tokens) : "");
  } else {
    out += fmt::format("Prompts of {} tokens, outputs of {} tokens", lengths(workload.input_tokens), lengths(workload.output_tokens));
    if (workload.prefix) {
      out += fmt::format("; {:.0f}% of sessions share one of {} prefixes of {} tokens (zipf s={:g})", workload.prefix->fraction * 100,
                         workload.prefix->num_groups, workload.prefix->length_tokens, workload.prefix->zipf_exponent);
    }
    out += ".";
  }
  if (workload.sessions.num_turns > 1 && !workload.replay) out += fmt::format(" Sessions of {} turns.", workload.sessions.num_turns);
  if (!workload.models.empty()) out += fmt::format(" {} models mixed.", workload.models.size());
  if (workload.ignore_eos) out += " ignore_eos (exact output lengths).";
  if (!workload.cache_retention.empty()) out += fmt::format(" Prompt-cache retention {}.", workload.cache_retention);
  if (workload.slo.is_set()) {
    std::string slo;
    auto add = [&](const char* name, const std::optional<double>& ms) {
      if (ms) slo += fmt::format("{}{} <= {:g} ms", slo.empty() ? "" : ", ", name, *ms);
    };
    add("TTFT", workload.slo.ttft_ms);
    add("TPOT", workload.slo.tpot_ms);
    add("ITL", workload.slo.itl_ms);
    add("E2E", workload.slo.e2e_ms);
    out += fmt::format(" SLO: {}.", slo);
  }
  return out;
}

json workload_to_json(const Workload& workload) {
  json out;
  out["seed"] = workload.seed;
  out["input_tokens"] = distribution_to_json(workload.input_tokens);
  out["output_tokens"] = distribution_to_json(workload.output_tokens);
  json stages = json::array();
  for (const StageSpec& stage : workload.stages) {
    json entry = {{"arrival", arrival_to_json(stage.arrival)}};
    if (stage.num_requests > 0) entry["requests"] = stage.num_requests;
    if (stage.duration_s > 0) entry["duration_s"] = stage.duration_s;
    if (stage.is_warmup) entry["warmup"] = true;
    stages.push_back(std::move(entry));
  }
  out["stages"] = std::move(stages);
  if (workload.replay_logged_models) out["replay_logged_models"] = true;
  if (workload.dataset) {
    out["dataset"] = {{"path", workload.dataset->path}, {"conversations", workload.dataset->conversations.size()}};
    if (workload.max_prompt_tokens > 0) out["dataset"]["max_prompt_tokens"] = workload.max_prompt_tokens;
  }
  if (workload.prefix) {
    out["prefix"] = {{"groups", workload.prefix->num_groups},
                     {"length_tokens", workload.prefix->length_tokens},
                     {"zipf_s", workload.prefix->zipf_exponent},
                     {"fraction", workload.prefix->fraction}};
  }
  if (workload.sessions.num_turns > 1) {
    out["sessions"] = {{"turns", workload.sessions.num_turns}, {"think_time_ms", workload.sessions.think_time_ms}};
    if (workload.sessions.think_time_max_ms > workload.sessions.think_time_ms) {
      out["sessions"]["think_time_max_ms"] = workload.sessions.think_time_max_ms;
    }
  }
  if (!workload.models.empty()) {
    json models = json::array();
    for (const ModelWeight& entry : workload.models) models.push_back({{"model", entry.model}, {"weight", entry.weight}});
    out["models"] = std::move(models);
  }
  if (workload.ignore_eos) out["ignore_eos"] = true;
  if (workload.temperature) out["temperature"] = *workload.temperature;
  if (!workload.cache_retention.empty()) out["cache_retention"] = workload.cache_retention;
  out["timeout_s"] = workload.timeout_s;
  if (workload.slo.is_set()) {
    json slo = json::object();
    if (workload.slo.ttft_ms) slo["ttft_ms"] = *workload.slo.ttft_ms;
    if (workload.slo.tpot_ms) slo["tpot_ms"] = *workload.slo.tpot_ms;
    if (workload.slo.itl_ms) slo["itl_ms"] = *workload.slo.itl_ms;
    if (workload.slo.e2e_ms) slo["e2e_ms"] = *workload.slo.e2e_ms;
    out["slo"] = std::move(slo);
  }
  if (!workload.targets.empty()) {
    json targets = json::array();
    for (const TargetSpec& target : workload.targets) {
      json entry = {{"name", target.name}, {"url", target.url}, {"model", target.model},
                    {"api", api_kind_name(target.api)}, {"max_connections", target.max_connections}};
      if (target.price.is_set()) entry["price"] = price_to_json(target.price);
      targets.push_back(std::move(entry));  // headers are left out: they may hold API keys
    }
    out["targets"] = std::move(targets);
  }
  return out;
}

}  // namespace tern::bench
