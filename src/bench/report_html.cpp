// The HTML report: one self-contained page. Plots are inline SVG drawn here — no scripts, no fonts, no
// network — so the file opens the same on an air-gapped laptop years from now.

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "bench/report.h"

namespace tern::bench {

namespace {

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape_html(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), x ascending
};

/// Tick step giving about `count` ticks over `span`: 1, 2 or 5 times a power of ten.
double nice_step(double span, int count) {
  if (span <= 0) return 1;
  const double raw = span / count;
  const double power = std::pow(10, std::floor(std::log10(raw)));
  for (double factor : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= factor * power) return factor * power;
  }
  return 10 * power;
}

std::string format_tick(double value) {
  if (std::abs(value) >= 1000) return fmt::format("{:.0f}", value);
  if (std::abs(value - std::round(value)) < 1e-9) return fmt::format("{:.0f}", value);
  return fmt::format("{:g}", value);
}

std::string line_chart(std::string_view title, std::string_view x_label, std::string_view y_label,
                       const std::vector<Series>& series, bool show_markers) {
  constexpr double kWidth = 560, kHeight = 320, kLeft = 64, kRight = 16, kTop = 28, kBottom = 48;
  double x_min = 1e300, x_max = -1e300, y_min = 0, y_max = -1e300;
  for (const Series& one : series) {
    for (const auto& [x, y] : one.points) {
      x_min = std::min(x_min, x);
      x_max = std::max(x_max, x);
      y_max = std::max(y_max, y);
    }
  }
  if (x_min > x_max) return "<p>(no data)</p>";
  if (x_max - x_min < 1e-12) x_max = x_min + 1;
  if (y_max <= y_min) y_max = y_min + 1;
  const double x_step = nice_step(x_max - x_min, 6), y_step = nice_step(y_max - y_min, 5);
  x_min = std::floor(x_min / x_step) * x_step;
  x_max = std::ceil(x_max / x_step) * x_step;
  y_max = std::ceil(y_max / y_step) * y_step;
  const double plot_width = kWidth - kLeft - kRight, plot_height = kHeight - kTop - kBottom;
  auto sx = [&](double x) { return kLeft + (x - x_min) / (x_max - x_min) * plot_width; };
  auto sy = [&](double y) { return kTop + plot_height - (y - y_min) / (y_max - y_min) * plot_height; };
  std::string svg = fmt::format(
      R"svg(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="11">)svg",
      kWidth, kHeight, kWidth, kHeight);
  svg += fmt::format(R"svg(<text x="{}" y="16" font-size="13" font-weight="bold">{}</text>)svg", kLeft, escape_html(title));
  for (double x = x_min; x <= x_max + x_step / 2; x += x_step) {
    svg += fmt::format(R"svg(<line x1="{0:.1f}" y1="{1}" x2="{0:.1f}" y2="{2}" stroke="#e0e0e0"/><text x="{0:.1f}" y="{3}" text-anchor="middle">{4}</text>)svg",
                       sx(x), kTop, kTop + plot_height, kTop + plot_height + 14, format_tick(x));
  }
  for (double y = y_min; y <= y_max + y_step / 2; y += y_step) {
    svg += fmt::format(R"svg(<line x1="{0}" y1="{1:.1f}" x2="{2}" y2="{1:.1f}" stroke="#e0e0e0"/><text x="{3}" y="{4:.1f}" text-anchor="end">{5}</text>)svg",
                       kLeft, sy(y), kLeft + plot_width, kLeft - 4, sy(y) + 4, format_tick(y));
  }
  svg += fmt::format(R"svg(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>)svg", kLeft, kTop, plot_width, plot_height);
  svg += fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle">{}</text>)svg", kLeft + plot_width / 2, kHeight - 10, escape_html(x_label));
  svg += fmt::format(R"svg(<text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>)svg", kTop + plot_height / 2,
                     escape_html(y_label));
  for (size_t index = 0; index < series.size(); ++index) {
    const char* color = kColors[index % std::size(kColors)];
    std::string points;
    for (const auto& [x, y] : series[index].points) points += fmt::format("{:.1f},{:.1f} ", sx(x), sy(y));
    svg += fmt::format(R"svg(<polyline fill="none" stroke="{}" stroke-width="1.8" points="{}"/>)svg", color, points);
    if (show_markers) {
      for (const auto& [x, y] : series[index].points) {
        svg += fmt::format(R"svg(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)svg", sx(x), sy(y), color);
      }
    }
    const double legend_y = kTop + 14 + 14 * index;
    svg += fmt::format(R"svg(<rect x="{}" y="{:.1f}" width="10" height="3" fill="{}"/><text x="{}" y="{:.1f}">{}</text>)svg",
                       kLeft + plot_width - 150, legend_y - 4, color, kLeft + plot_width - 136, legend_y, escape_html(series[index].name));
  }
  return svg + "</svg>";
}

/// Empirical CDF of `values` as at most ~300 points (x = value, y = fraction <= x).
std::vector<std::pair<double, double>> cdf_points(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  std::vector<std::pair<double, double>> points;
  const size_t stride = std::max<size_t>(1, values.size() / 300);
  for (size_t i = 0; i < values.size(); i += stride) points.emplace_back(values[i], (i + 1.0) / values.size());
  if (!values.empty()) points.emplace_back(values.back(), 1.0);
  return points;
}

enum class Measure { kTtft, kTpot, kItl, kE2e };

std::vector<double> values_of(const RunResult& result, size_t stage, size_t target, Measure measure) {
  std::vector<double> values;
  for (const RequestRecord& record : result.records) {
    if (record.stage != stage || record.target != target || !record.is_ok()) continue;
    switch (measure) {
      case Measure::kTtft: if (record.first_token_ns >= 0) values.push_back(ttft_ms_of(record)); break;
      case Measure::kTpot: if (double tpot = tpot_ms_of(record); tpot >= 0) values.push_back(tpot); break;
      case Measure::kE2e: values.push_back(e2e_ms_of(record)); break;
      case Measure::kItl:
        for (size_t i = 1; i < record.chunk_ns.size(); ++i) values.push_back((record.chunk_ns[i] - record.chunk_ns[i - 1]) / 1e6);
        break;
    }
  }
  return values;
}

std::string summary_table(const ReportInput& input) {
  std::string html = "<table><tr><th>stage</th><th>target</th><th>ok / all</th><th>req/s</th><th>output tok/s</th>"
                     "<th>TTFT p50 / p99 ms</th><th>TPOT p50 / p99 ms</th><th>ITL p50 / p99 ms</th><th>E2E p50 / p99 ms</th>"
                     "<th>goodput</th><th>queue p99 ms</th><th>cached</th><th>effective $/1M tok</th><th>list $/1M tok</th><th>errors</th></tr>";
  for (const Metrics& m : input.metrics) {
    std::string errors;
    for (const auto& [kind, count] : m.errors_by_kind) errors += fmt::format("{}={} ", kind, count);
    const double cached = m.tokens.server_prompt_tokens > 0 ? 100.0 * m.tokens.cached_tokens / m.tokens.server_prompt_tokens : 0;
    html += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{:.2f}</td><td>{:.1f}</td><td>{:.1f} / {:.1f}</td><td>{:.2f} / {:.2f}</td>"
        "<td>{:.2f} / {:.2f}</td><td>{:.1f} / {:.1f}</td><td>{:.2f}/s ({:.0f}%)</td><td>{:.2f}</td><td>{:.1f}%</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape_html(m.stage_label), escape_html(m.target_name), m.num_ok, m.num_requests, m.request_throughput,
        m.output_token_throughput, m.latency.ttft_ms.p50, m.latency.ttft_ms.p99, m.latency.tpot_ms.p50, m.latency.tpot_ms.p99,
        m.latency.itl_chunk_ms.p50, m.latency.itl_chunk_ms.p99, m.latency.e2e_ms.p50, m.latency.e2e_ms.p99, m.goodput,
        100 * m.good_fraction, m.latency.queue_delay_ms.p99, cached,
        m.cost.is_available ? fmt::format("{:.4f}", m.cost.effective_per_mtok_usd) : "-",
        m.cost.is_available ? fmt::format("{:.4f}", m.cost.list_per_mtok_usd) : "-", escape_html(errors));
  }
  return html + "</table>";
}

/// What the run cost per target and stage, at each target's prices: list price (every prompt token at
/// the input rate) beside effective (caching netted out), the cache's saving apart.
std::string cost_table(const ReportInput& input) {
  bool any = false;
  for (const Metrics& m : input.metrics) any = any || m.cost.is_available;
  if (!any) return {};
  std::string html =
      "<h2>Cost</h2><p>At each target's prices. <i>List</i> bills every prompt token at the input rate; <i>effective</i> nets out "
      "prompt caching (cached tokens at the cached rate, cache writes at the write rate); the saving is the difference. An hourly "
      "price spreads the instance's cost over what it served in the measured time.</p>"
      "<table><tr><th>stage</th><th>target</th><th>basis</th><th>list $/1M tok</th><th>effective $/1M tok</th><th>effective $/1M output tok</th>"
      "<th>cache saving</th><th>prompt cached</th><th>list USD</th><th>effective USD</th><th>effective $/request</th><th>effective $/good request</th></tr>";
  for (const Metrics& m : input.metrics) {
    const CostMetrics& c = m.cost;
    if (!c.is_available) {
      html += fmt::format("<tr><td>{}</td><td>{}</td><td colspan=\"10\">no price given (--price)</td></tr>", escape_html(m.stage_label),
                          escape_html(m.target_name));
      continue;
    }
    html += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4f}</td><td>{:.4f}</td><td>{:.4f}</td><td>{:.1f}% (${:.6f})</td>"
                        "<td>{:.1f}%</td><td>{:.6f}</td><td>{:.6f}</td><td>{:.8f}</td><td>{}</td></tr>",
                        escape_html(m.stage_label), escape_html(m.target_name), c.basis, c.list_per_mtok_usd, c.effective_per_mtok_usd,
                        c.effective_per_moutput_tok_usd, 100 * c.saving_fraction, c.list_usd - c.effective_usd, 100 * c.cached_fraction,
                        c.list_usd, c.effective_usd, c.effective_per_request_usd,
                        c.effective_per_good_request_usd > 0 ? fmt::format("{:.8f}", c.effective_per_good_request_usd) : "-");
  }
  return html + "</table>";
}

std::string page_head(std::string_view title) {
  return fmt::format(R"(<!DOCTYPE html><html><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:sans-serif;margin:24px;color:#222}}table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}th{{background:#f4f4f4}}td:nth-child(2){{text-align:left}}
.plots{{display:flex;flex-wrap:wrap;gap:8px}}pre{{background:#f8f8f8;padding:8px;font-size:11px;overflow:auto}}</style></head><body>)",
                     escape_html(title));
}

}  // namespace

std::string capacity_html(const std::vector<CapacityResult>& results, const CapacityOptions& options, const Workload& workload,
                          const SloSpec& slo, const std::string& started_at, const std::string& machine) {
  std::string html = page_head("tern bench capacity search");
  std::string objectives;
  auto add = [&](const char* name, const std::optional<double>& ms) {
    if (ms) objectives += fmt::format("{}{} &le; {:g} ms", objectives.empty() ? "" : ", ", name, *ms);
  };
  add("TTFT", slo.ttft_ms);
  add("TPOT", slo.tpot_ms);
  add("ITL", slo.itl_ms);
  add("E2E", slo.e2e_ms);
  html += fmt::format("<h1>tern bench: capacity search</h1><p>Started {} &middot; client machine: {}</p>", escape_html(started_at),
                      escape_html(machine));
  html += fmt::format("<p>The highest Poisson arrival rate at which at least {:.0f}% of requests succeed within every objective ({}).</p>",
                      options.goodput * 100, objectives);
  html += "<h2>Answer</h2><table><tr><th>target</th><th>max rate within the SLO (req/s)</th><th>probes</th></tr>";
  for (const CapacityResult& r : results) {
    html += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", escape_html(r.target),
                        r.max_rate <= 0 ? std::string("none met it") : fmt::format("{}{:.3g}", r.is_bounded ? "" : "&ge; ", r.max_rate),
                        r.probes.size());
  }
  html += "</table><h2>The curve</h2><div class=\"plots\">";
  auto curve = [&](const char* title, const char* y_label, auto value) {
    std::vector<Series> series;
    for (const CapacityResult& r : results) {
      Series one{r.target, {}};
      for (const CapacityProbe& p : r.probes) one.points.emplace_back(p.rate, value(p));
      std::sort(one.points.begin(), one.points.end());
      series.push_back(std::move(one));
    }
    html += line_chart(title, "offered rate (requests / s)", y_label, series, true);
  };
  curve("Requests within the SLO", "% of requests", [](const CapacityProbe& p) { return p.good_fraction * 100; });
  curve("Achieved throughput", "successful requests / s", [](const CapacityProbe& p) { return p.request_throughput; });
  curve("p99 TTFT", "ms", [](const CapacityProbe& p) { return p.ttft_ms.p99; });
  curve("p99 inter-token latency", "ms", [](const CapacityProbe& p) { return p.itl_ms.p99; });
  html += "</div><h2>Probes</h2><table><tr><th>target</th><th>rate</th><th>ok/all</th><th>within SLO</th><th>req/s</th>"
          "<th>out tok/s</th><th>TTFT p50/p99 ms</th><th>ITL p50/p99 ms</th><th>E2E p50/p99 ms</th><th></th></tr>";
  for (const CapacityResult& r : results) {
    for (const CapacityProbe& p : r.probes) {
      html += fmt::format("<tr><td>{}</td><td>{:.3g}</td><td>{}/{}</td><td>{:.1f}%</td><td>{:.2f}</td><td>{:.1f}</td><td>{:.1f} / {:.1f}</td>"
                          "<td>{:.1f} / {:.1f}</td><td>{:.1f} / {:.1f}</td><td>{}</td></tr>",
                          escape_html(r.target), p.rate, p.num_ok, p.num_requests, p.good_fraction * 100, p.request_throughput,
                          p.output_token_throughput, p.ttft_ms.p50, p.ttft_ms.p99, p.itl_ms.p50, p.itl_ms.p99, p.e2e_ms.p50,
                          p.e2e_ms.p99, p.passed ? "pass" : "<b>fail</b>");
    }
  }
  html += "</table><h2>Workload</h2><pre>" + escape_html(workload_to_json(workload).dump(2)) + "</pre></body></html>\n";
  return html;
}

std::string report_html(const ReportInput& input) {
  std::string html = page_head("tern bench report");
  html += fmt::format("<h1>tern bench</h1><p>Started {} &middot; client machine: {} &middot; client token counts: {}</p>",
                      escape_html(input.started_at), escape_html(input.machine), escape_html(input.tokenizer));
  html += "<p>" + escape_html(describe_workload(input.workload)) + "</p>";
  html += "<h2>Targets</h2><ul>";
  for (const TargetSpec& target : input.targets) {
    html += fmt::format("<li><b>{}</b>: {} (model {}, {})</li>", escape_html(target.name), escape_html(target.url),
                        escape_html(target.model), api_kind_name(target.api));
  }
  html += "</ul><h2>Summary</h2>" + summary_table(input) + cost_table(input);
  const size_t num_stages = input.plan.stages.size();
  size_t num_measured = 0;
  for (const auto& stage : input.plan.stages) num_measured += stage->spec().is_warmup ? 0 : 1;
  if (const WarmupCounts warmup = warmup_counts(input.result, input.plan); warmup.num_requests > 0) {
    html += fmt::format("<p>Warm-up: {} requests sent ({} failed) before the measured stages, excluded from every figure.</p>",
                        warmup.num_requests, warmup.num_failed);
  }
  if (num_measured > 1) {
    html += "<h2>Across the sweep</h2><div class=\"plots\">";
    struct SweepPlot {
      const char* title;
      const char* y_label;
      double (*value)(const Metrics&);
    };
    const SweepPlot plots[] = {
        {"Throughput", "successful requests / s", [](const Metrics& m) { return m.request_throughput; }},
        {"Output tokens", "tokens / s", [](const Metrics& m) { return m.output_token_throughput; }},
        {"p99 TTFT", "ms", [](const Metrics& m) { return m.latency.ttft_ms.p99; }},
        {"p99 E2E latency", "ms", [](const Metrics& m) { return m.latency.e2e_ms.p99; }},
        {"Goodput", "requests / s within SLO", [](const Metrics& m) { return m.goodput; }},
    };
    const bool is_concurrency = !input.plan.stages.back()->spec().arrival.is_open_loop();
    for (const SweepPlot& plot : plots) {
      std::vector<Series> series;
      for (size_t target = 0; target < input.targets.size(); ++target) {
        Series one{input.targets[target].name, {}};
        for (const Metrics& m : input.metrics) {
          if (m.target == target) one.points.emplace_back(m.load_value, plot.value(m));
        }
        std::sort(one.points.begin(), one.points.end());
        series.push_back(std::move(one));
      }
      html += line_chart(plot.title, is_concurrency ? "concurrency" : "offered rate (requests / s)", plot.y_label, series, true);
    }
    html += "</div>";
  }
  const std::pair<Measure, const char*> measures[] = {
      {Measure::kTtft, "TTFT (ms)"}, {Measure::kTpot, "TPOT (ms)"}, {Measure::kItl, "ITL per chunk (ms)"}, {Measure::kE2e, "E2E latency (ms)"}};
  for (size_t stage = 0; stage < num_stages; ++stage) {
    if (input.plan.stages[stage]->spec().is_warmup) continue;
    html += fmt::format("<h2>Stage {}: {} &mdash; latency CDFs</h2><div class=\"plots\">", stage + 1,
                        escape_html(input.plan.stages[stage]->spec().arrival.label()));
    for (const auto& [measure, label] : measures) {
      std::vector<Series> series;
      for (size_t target = 0; target < input.targets.size(); ++target) {
        series.push_back({input.targets[target].name, cdf_points(values_of(input.result, stage, target, measure))});
      }
      html += line_chart(fmt::format("CDF of {}", label), label, "fraction of requests", series, false);
    }
    html += "</div>";
  }
  html += "<h2>Workload</h2><pre>" + escape_html(workload_to_json(input.workload).dump(2)) + "</pre></body></html>\n";
  return html;
}

}  // namespace tern::bench
