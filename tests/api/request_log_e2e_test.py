#!/usr/bin/env python3
"""End-to-end tests of `tern serve --request-log` through the openai SDK: one JSON line per request
(served, refused, with the client's x-request-id and x-session-id), x-request-id on every answer,
never the text unless --log-content, and the round trip "profile production, replay it as a
benchmark": `tern bench profile` reads the log and `tern bench` replays the workload it derives.

    python tests/api/request_log_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the SDK is missing.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

try:
    import openai
except ImportError:
    print("SKIP: the openai package is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, run_with_tern

TERN = None
MODEL = "smollm2-135m"
SYSTEM = "You are a terse assistant. Answer in a few words."


def read_log(path, count, timeout=10):
    """The log's lines once it holds at least `count` (lines are written by a thread of their own)."""
    deadline = time.time() + timeout
    while True:
        lines = []
        if os.path.exists(path):
            with open(path) as f:
                lines = [json.loads(line) for line in f if line.strip()]
        if len(lines) >= count or time.time() > deadline:
            return lines
        time.sleep(0.05)


class RequestLog(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="tern-request-log-")
        cls.log = os.path.join(cls.dir.name, "requests.jsonl")
        cls.server = TernServe(TERN, ["-m", MODEL, "--context", "1024", "--kv-cache-memory", "80M", "--request-log", cls.log,
                                      "--metrics-compat", "vllm"])
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    def chat(self, user, system=SYSTEM, headers=None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        raw = self.client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=8, temperature=0,
                                                                    extra_headers=headers or {})
        return raw.headers, raw.parse()

    def test_one_line_per_request_with_ids_times_tokens_and_no_text(self):
        before = len(read_log(self.log, 0, timeout=0))
        headers, first = self.chat("Name a colour.", headers={"x-request-id": "client-abc-1", "x-session-id": "s1"})
        self.assertEqual(headers["x-request-id"], "client-abc-1", "the client's id comes back")
        headers2, second = self.chat("Name a fruit.")
        self.assertEqual(headers2["x-request-id"], second.id, "else the response's own id")
        self.chat("Name a city.", system=None, headers={"x-request-id": "bad id with spaces"})
        with self.assertRaises(openai.NotFoundError) as refused:
            self.client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        self.assertTrue(refused.exception.response.headers["x-request-id"], "a refusal carries an id too")
        lines = read_log(self.log, before + 4)[before:]
        self.assertEqual(len(lines), 4, lines)
        by_status = sorted(line["status"] for line in lines)
        self.assertEqual(by_status, [200, 200, 200, 404])
        served = {line["request_id"]: line for line in lines if line["status"] == 200}
        self.assertIn("client-abc-1", served)
        self.assertIn(second.id, served)
        line = served["client-abc-1"]
        self.assertEqual(line["model"], MODEL)
        self.assertEqual(line["deployment"], MODEL)
        self.assertEqual(line["session_id"], "s1")
        self.assertEqual(line["prompt_tokens"], first.usage.prompt_tokens)
        self.assertEqual(line["completion_tokens"], first.usage.completion_tokens)
        self.assertIn(line["finish_reason"], ("stop", "length"))
        self.assertGreaterEqual(line["queued_ms"], 0)
        self.assertGreater(line["ttft_ms"], 0)
        self.assertGreaterEqual(line["e2e_ms"], line["ttft_ms"])
        self.assertAlmostEqual(line["end"], line["timestamp"] + line["e2e_ms"] / 1000, places=3)
        self.assertLess(abs(line["timestamp"] - time.time()), 120)
        self.assertEqual(line["prefix_hash"], served[second.id]["prefix_hash"], "one system prompt, one prefix hash")
        no_system = [l for l in served.values() if l["request_id"] not in ("client-abc-1", second.id)]
        self.assertEqual(len(no_system), 1)
        self.assertNotIn("prefix_hash", no_system[0])
        self.assertTrue(no_system[0]["request_id"].startswith("chatcmpl-"), "an id with spaces is not taken")
        refusal = next(l for l in lines if l["status"] == 404)
        self.assertEqual(refusal["finish_reason"], "error")
        self.assertEqual(refusal["model"], "no-such-model")
        self.assertLess(abs(refusal["timestamp"] - time.time()), 120, "a refusal's arrival is logged too")
        for l in lines:
            self.assertNotIn("request", l)
            self.assertNotIn("output", l)
            self.assertNotIn("colour", json.dumps(l), "no prompt text without --log-content")

    def test_profile_the_log_and_replay_it_as_a_benchmark(self):
        for i in range(12):
            self.chat("Count to %d in words, then stop." % (i + 2), system=SYSTEM if i % 3 else None)
        lines = read_log(self.log, 12)
        self.assertGreaterEqual(len(lines), 12)
        workload_path = os.path.join(self.dir.name, "workload.json")
        profile = subprocess.run([TERN, "bench", "profile", self.log, "-o", workload_path, "--flat"], capture_output=True, text=True,
                                 timeout=60)
        self.assertEqual(profile.returncode, 0, profile.stderr)
        with open(workload_path) as f:
            workload = json.load(f)
        self.assertGreater(workload["profile"]["requests"], 0, workload)
        self.assertIn(MODEL, json.dumps(workload), "the models come from the log")
        report_path = os.path.join(self.dir.name, "report.json")
        run = subprocess.run([TERN, "bench", "--workload", workload_path, "--target", self.server.url + "/v1", "--model", MODEL,
                              "--requests", "6", "--concurrency", "2", "--tokenizer", MODEL, "--json", report_path, "-q"],
                             capture_output=True, text=True, timeout=300)
        self.assertEqual(run.returncode, 0, run.stderr + run.stdout)
        with open(report_path) as f:
            report = json.load(f)
        self.assertEqual(report["results"][0]["requests"]["ok"], 6, run.stdout)
        # The replayed requests are logged in turn.
        self.assertGreaterEqual(len(read_log(self.log, len(lines) + 6)), len(lines) + 6)

    def test_replay_the_log_as_it_happened(self):
        """`tern bench --replay`: the log's own requests, at their times (sped up), with their lengths."""
        for i in range(6):
            self.chat("Name %d colours of the rainbow." % (i + 2), system=SYSTEM)
        logged = [l for l in read_log(self.log, 6) if l["status"] == 200]
        replay_log = os.path.join(self.dir.name, "replay-source.jsonl")
        with open(replay_log, "w") as f:
            for l in logged:
                f.write(json.dumps(l) + "\n")
        first = min(l["timestamp"] for l in logged)
        logged.sort(key=lambda l: l["timestamp"])

        def replay(api):
            report_path = os.path.join(self.dir.name, f"replay-{api}.json")
            run = subprocess.run([TERN, "bench", "--replay", replay_log, "--speedup", "5", "--target", self.server.url + "/v1",
                                  "--model", MODEL, "--tokenizer", MODEL, "--ignore-eos", "--api", api, "--json", report_path,
                                  "--json-requests", "-q"], capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stderr + run.stdout)
            with open(report_path) as f:
                report = json.load(f)
            self.assertEqual(report["results"][0]["requests"]["ok"], len(logged))
            sent = sorted(report["requests"], key=lambda r: r["session"])
            # scheduled_s counts from the run's start; the stage (the replay) starts when its plan is
            # ready, a few ms later on a busy machine: the offsets are compared from the first request.
            start = sent[0]["scheduled_s"]
            for request, line in zip(sent, logged):
                self.assertAlmostEqual(request["scheduled_s"] - start, (line["timestamp"] - first) / 5, delta=0.01)
                self.assertEqual(request["usage"]["completion_tokens"], line["completion_tokens"])
            return [r["usage"]["prompt_tokens"] - l["prompt_tokens"] for r, l in zip(sent, logged)]

        # Completions: the logged prompt lengths exactly (the same tokenizer sizes the text).
        self.assertEqual(replay("completions"), [0] * len(logged))
        # Chat: the server's template wraps the text as it wrapped the original's, so the lengths are
        # off by one constant (the template's tokens, counted twice), shown in the report's token check.
        self.assertEqual(len(set(replay("chat"))), 1)


    def test_metrics_compat_exports_vllm_names_beside_terns(self):
        """--metrics-compat vllm: what a Kubernetes inference gateway's endpoint picker reads."""
        self.chat("Hi.")
        with urllib.request.urlopen(self.server.url + "/metrics", timeout=30) as r:
            text = r.read().decode()
        for name in ("num_requests_waiting", "num_requests_running", "kv_cache_usage_perc"):
            ours = [l for l in text.splitlines() if l.startswith(f"tern:{name}{{")]
            theirs = [l for l in text.splitlines() if l.startswith(f"vllm:{name}{{")]
            self.assertEqual(len(ours), 1, name)
            self.assertEqual([l[5:] for l in theirs], [l[5:] for l in ours], name)
        self.assertIn('vllm:gpu_cache_usage_perc{model_name="smollm2-135m"}', text)
        self.assertIn("vllm:time_to_first_token_seconds_count", text)
        self.assertNotIn("vllm:kv_pinned_blocks", text, "tern-only metrics keep their own name only")

    def test_the_grafana_dashboard_queries_only_metrics_tern_exports(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.path.join(root, "deploy/grafana/tern-dashboard.json")
        made = subprocess.run([sys.executable, os.path.join(root, "tools/make_grafana_dashboard.py"), os.path.join(self.dir.name, "d.json")],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(made.returncode, 0, made.stderr)
        with open(path) as f, open(os.path.join(self.dir.name, "d.json")) as g:
            dashboard = json.load(f)
            self.assertEqual(dashboard, json.load(g), "deploy/grafana/tern-dashboard.json is stale: run tools/make_grafana_dashboard.py")
        self.chat("Hi.")
        with urllib.request.urlopen(self.server.url + "/metrics", timeout=30) as r:
            exported = {re.split(r"[{ ]", l)[0] for l in r.read().decode().splitlines() if l.startswith("tern:")}
        exported |= {n[: -len(suffix)] for n in exported for suffix in ("_bucket", "_sum", "_count") if n.endswith(suffix)}
        # Exported only where configured: the disk tier (--kv-disk-cache) and API keys.
        conditional = {"tern:kv_disk_hit_tokens_total", "tern:key_cost_usd_total"}
        queried = set()
        for p in dashboard["panels"]:
            for t in p["targets"]:
                queried |= {m if not m.endswith("_bucket") else m[: -len("_bucket")] for m in re.findall(r"tern:[a-z_]+", t["expr"])}
        self.assertGreater(len(queried), 10)
        self.assertEqual(sorted(queried - exported - conditional), [], "queried but not exported")


class RequestLogContent(unittest.TestCase):
    def test_log_content_keeps_the_messages_and_the_output(self):
        with tempfile.TemporaryDirectory(prefix="tern-request-log-") as tmp:
            log = os.path.join(tmp, "requests.jsonl")
            server = TernServe(TERN, ["-m", MODEL, "--context", "1024", "--kv-cache-memory", "40M", "--request-log", log, "--log-content"])
            try:
                client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
                reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6,
                                                       temperature=0)
                stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say bye."}], max_tokens=6,
                                                        temperature=0, stream=True)
                streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
                lines = read_log(log, 2)
            finally:
                server.stop()
        self.assertEqual(len(lines), 2)
        by_prompt = {l["request"][0]["content"]: l for l in lines}
        self.assertEqual(by_prompt["Say hello."]["output"], reply.choices[0].message.content)
        self.assertEqual(by_prompt["Say bye."]["output"], streamed)


if __name__ == "__main__":
    run_with_tern()
