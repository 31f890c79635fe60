#!/usr/bin/env python3
"""Writes deploy/grafana/tern-dashboard.json: a Grafana dashboard over tern serve's Prometheus metrics
(throughput, TTFT and inter-token p50 / p99, requests running and waiting, KV use, prefix-cache hit rate
by tier, speculative decoding, per-deployment traffic, errors and breakers, spend per key). The panels'
queries name only metrics tern exports; tests/api/request_log_e2e_test.py checks every name against a
live server's /metrics.

Usage: python tools/make_grafana_dashboard.py [OUT.json]
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(pid, title, targets, unit, x, y, w=12, h=8, kind="timeseries"):
    return {"id": pid, "type": kind, "title": title, "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DS}
                        for i, (expr, legend) in enumerate(targets)]}


def quantiles(metric, label):
    return [(f'histogram_quantile({q}, sum by (le, model_name) (rate(tern:{metric}_bucket[$__rate_interval])))', f"{label} p{int(q * 100)} {{{{model_name}}}}")
            for q in (0.5, 0.99)]


def dashboard():
    panels = [
        panel(1, "Output tokens/s", [("sum by (model_name) (rate(tern:generation_tokens_total[$__rate_interval]))", "{{model_name}}"),
                                     ("sum by (model_name) (rate(tern:prompt_tokens_total[$__rate_interval]))", "prompt {{model_name}}")], "short", 0, 0),
        panel(2, "Requests running / waiting", [("sum by (model_name) (tern:num_requests_running)", "running {{model_name}}"),
                                                ("sum by (model_name) (tern:num_requests_waiting)", "waiting {{model_name}}")], "short", 12, 0),
        panel(3, "Time to first token", quantiles("time_to_first_token_seconds", "TTFT"), "s", 0, 8),
        panel(4, "Inter-token latency", quantiles("inter_token_latency_seconds", "ITL"), "s", 12, 8),
        panel(5, "KV cache use", [("tern:kv_cache_usage_perc", "{{model_name}}")], "percentunit", 0, 16),
        panel(6, "Prefix-cache hit rate (prompt tokens)",
              [("sum by (model_name) (rate(tern:prefix_cache_hits_total[$__rate_interval])) / "
                "sum by (model_name) (rate(tern:prefix_cache_queries_total[$__rate_interval]))", "all tiers {{model_name}}"),
               ("sum by (model_name) (rate(tern:kv_disk_hit_tokens_total[$__rate_interval])) / "
                "sum by (model_name) (rate(tern:prefix_cache_queries_total[$__rate_interval]))", "disk tier {{model_name}}"),
               ("sum by (model_name) (tern:kv_pinned_blocks)", "pinned blocks {{model_name}}")], "percentunit", 12, 16),
        panel(7, "Requests by finish reason", [("sum by (finished_reason) (rate(tern:request_success_total[$__rate_interval]))",
                                                "{{finished_reason}}")], "reqps", 0, 24),
        panel(8, "Deployments: attempts, failures, breakers",
              [("sum by (deployment) (rate(tern:deployment_requests_total[$__rate_interval]))", "attempts {{deployment}}"),
               ("sum by (deployment) (rate(tern:deployment_failures_total[$__rate_interval]))", "failures {{deployment}}"),
               ("tern:deployment_breaker_open", "breaker open {{deployment}}")], "short", 12, 24),
        panel(9, "Spend per key (USD/h)", [("sum by (key_id) (rate(tern:key_cost_usd_total[$__rate_interval])) * 3600", "{{key_id}}")],
              "currencyUSD", 0, 32),
        panel(10, "Speculative decoding: accepted / verified guesses",
              [("sum by (model_name) (rate(tern:spec_decode_num_accepted_tokens_total[$__rate_interval])) / "
                "sum by (model_name) (rate(tern:spec_decode_num_draft_tokens_total[$__rate_interval]))", "{{model_name}}")],
              "percentunit", 12, 32),
        panel(11, "Preemptions and queue time",
              [("sum by (model_name) (rate(tern:num_preemptions_total[$__rate_interval]))", "preemptions/s {{model_name}}")]
              + quantiles("request_queue_time_seconds", "queue"), "short", 0, 40, w=24),
    ]
    return {"title": "tern serve", "uid": "tern-serve", "schemaVersion": 39, "version": 1, "editable": True,
            "time": {"from": "now-1h", "to": "now"}, "refresh": "10s", "tags": ["tern", "llm"],
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]},
            "panels": panels}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "deploy/grafana/tern-dashboard.json")
    with open(out, "w") as f:
        json.dump(dashboard(), f, indent=1)
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
