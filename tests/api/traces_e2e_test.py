#!/usr/bin/env python3
"""End-to-end tests of request traces in `tern serve --config`: GET /admin/requests/{id} for a local
model's request (queue, cache lookup, prompt chunks, first token, decoding) and for a routed one (an
upstream that refuses connections: attempts, a retry, the breaker opening, the fallback, and the
breaker skipping it next time), the client's traceparent joined, and the same spans exported over
OTLP/HTTP to a fake OpenTelemetry collector that checks the payload (GenAI attribute names).

    python tests/api/traces_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the SDK is missing.
"""
import http.server
import json
import os
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

try:
    import openai
except ImportError:
    print("SKIP: the openai package is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, free_port, run_with_tern

TERN = None
MODEL = "smollm2-135m"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class FakeCollector:
    """An OTLP/HTTP receiver: keeps every POST /v1/traces body (JSON), answers 200 as a collector does."""

    def __init__(self):
        self.posts = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"), "body": json.loads(body)})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self):
        with self.lock:
            posts = list(self.posts)
        out = []
        for post in posts:
            for resource in post["body"]["resourceSpans"]:
                for scope in resource["scopeSpans"]:
                    for span in scope["spans"]:
                        out.append((resource, span))
        return out

    def root_of(self, request_id, timeout=15):
        """The exported root span of a request, waiting for the exporter's batch (every second)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for resource, span in self.spans():
                if attr(span["attributes"], "tern.request_id") == request_id:
                    return resource, span
            time.sleep(0.1)
        raise AssertionError(f"no span of {request_id} reached the collector")


def attr(attributes, key):
    for a in attributes:
        if a["key"] == key:
            value = a["value"]
            if "arrayValue" in value:
                return [list(v.values())[0] for v in value["arrayValue"]["values"]]
            return list(value.values())[0]
    return None


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Traces(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="tern-traces-")
        cls.collector = FakeCollector()
        config = os.path.join(cls.dir.name, "tern.yaml")
        with open(config, "w") as f:
            f.write(f"""
models:
  - name: {MODEL}
    model: {MODEL}
    context: 1024
    kv_cache_memory: 80M
deployments:
  - name: dead
    kind: openai
    base_url: http://127.0.0.1:{free_port()}/v1
    model: nothing
    retries: 1
    breaker: {{failures: 2, window: 60s, open_for: 60s}}
routes:
  - name: with-fallback
    deployments: [dead, {MODEL}]
tracing: {{keep: 100, otlp_endpoint: {cls.collector.url}, service_name: tern-e2e}}
""")
        cls.server = TernServe(TERN, ["--config", config])
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.collector.server.shutdown()
        cls.dir.cleanup()

    def trace(self, request_id):
        status, body = get(f"{self.server.url}/admin/requests/{request_id}")
        self.assertEqual(status, 200, body)
        return body

    def test_local_request_timeline_matches_its_answer(self):
        prompt = "Count slowly from one to twenty, one number per line. " * 6
        # Greedy, so that the answer (and its finish reason) is the same on every run.
        stream = self.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=16, stream=True, temperature=0,
            stream_options={"include_usage": True}, extra_headers={"x-request-id": "trace-local-1", "traceparent": TRACEPARENT})
        self.assertEqual(stream.headers["x-request-id"], "trace-local-1")
        chunks = list(stream.parse())
        usage = [c.usage for c in chunks if c.usage][-1]
        finish_reason = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][-1]
        t = self.trace("trace-local-1")
        names = [e["name"] for e in t["timeline"]]
        for name in ("upstream_attempt", "queued", "cache_lookup", "prefill_chunk", "first_token", "decode", "finished"):
            self.assertIn(name, names)
        self.assertEqual(t["trace_id"], "0af7651916cd43dd8448eb211c80319c", "the client's trace is joined")
        self.assertEqual(t["parent_span_id"], "b7ad6b7169203331")
        self.assertEqual((t["prompt_tokens"], t["completion_tokens"]), (usage.prompt_tokens, usage.completion_tokens))
        lookup = next(e for e in t["timeline"] if e["name"] == "cache_lookup")
        chunks = [e for e in t["timeline"] if e["name"] == "prefill_chunk"]
        self.assertEqual(lookup["cached_tokens"] + sum(c["tokens"] for c in chunks), usage.prompt_tokens,
                         "the prompt is what the cache had plus the chunks computed")
        self.assertEqual(lookup["ram_tokens"] + lookup["disk_tokens"] + lookup["pinned_tokens"], lookup["cached_tokens"])
        self.assertEqual([c["step"] for c in chunks], sorted(c["step"] for c in chunks))
        decode = next(e for e in t["timeline"] if e["name"] == "decode")
        self.assertEqual(decode["tokens"], usage.completion_tokens)
        # Times are consistent: the first token comes after the queue and before the end.
        at = {e["name"]: e["at_ms"] for e in t["timeline"]}
        self.assertLessEqual(at["queued"], at["first_token"])
        self.assertLessEqual(at["first_token"], t["e2e_ms"] + 0.001)
        self.assertAlmostEqual(t["ttft_ms"], at["first_token"], delta=50)

        # The same spans at the collector: OTLP/HTTP JSON, GenAI attribute names, children under the root.
        resource, root = self.collector.root_of("trace-local-1")
        self.assertEqual(attr(resource["resource"]["attributes"], "service.name"), "tern-e2e")
        post = self.collector.posts[0]
        self.assertEqual(post["path"], "/v1/traces")
        self.assertEqual(post["content_type"], "application/json")
        self.assertEqual(root["traceId"], "0af7651916cd43dd8448eb211c80319c")
        self.assertEqual(root["parentSpanId"], "b7ad6b7169203331")
        self.assertEqual(root["spanId"], t["span_id"])
        self.assertEqual(root["name"], f"chat {MODEL}")
        self.assertEqual(root["kind"], 2)
        a = root["attributes"]
        self.assertEqual(attr(a, "gen_ai.operation.name"), "chat")
        self.assertEqual(attr(a, "gen_ai.provider.name"), "tern")
        self.assertEqual(attr(a, "gen_ai.request.model"), MODEL)
        self.assertEqual(attr(a, "gen_ai.response.model"), MODEL)
        self.assertEqual(attr(a, "gen_ai.request.max_tokens"), "16")
        self.assertEqual(attr(a, "gen_ai.usage.input_tokens"), str(usage.prompt_tokens))
        self.assertEqual(attr(a, "gen_ai.usage.output_tokens"), str(usage.completion_tokens))
        self.assertEqual(attr(a, "gen_ai.response.finish_reasons"), [finish_reason])
        start, end = int(root["startTimeUnixNano"]), int(root["endTimeUnixNano"])
        self.assertAlmostEqual((end - start) / 1e6, t["e2e_ms"], delta=0.01)
        self.assertLess(abs(start / 1e9 - time.time()), 120)
        children = [s for _, s in self.collector.spans() if s.get("parentSpanId") == root["spanId"]]
        self.assertEqual(sorted(s["name"] for s in children if s["name"] == "prefill_chunk"), ["prefill_chunk"] * len(chunks))
        for child in children:
            self.assertEqual(child["traceId"], root["traceId"])
            self.assertGreaterEqual(int(child["startTimeUnixNano"]), start)
        self.assertIn("first_token", [e["name"] for e in root["events"]])

    def test_routed_request_shows_attempts_retry_breaker_and_fallback(self):
        body = {"model": "with-fallback", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4,
                "extra_body": {"provider": {"order": ["dead", MODEL]}}}
        r = self.client.chat.completions.with_raw_response.create(**body, extra_headers={"x-request-id": "trace-routed-1"})
        self.assertEqual(r.parse().model_extra.get("provider"), MODEL, "the fallback answered")
        names = [e["name"] for e in self.trace("trace-routed-1")["timeline"]]
        attempts = [e for e in self.trace("trace-routed-1")["timeline"] if e["name"] == "upstream_attempt"]
        self.assertEqual([a["deployment"] for a in attempts], ["dead", "dead", MODEL], names)
        self.assertEqual([a["try"] for a in attempts], [1, 2, 1])
        self.assertGreaterEqual(attempts[0]["status"], 500)
        self.assertIn("error", attempts[0])
        self.assertEqual(attempts[2]["status"], 200)
        for name in ("retry_scheduled", "breaker_opened", "fallback"):
            self.assertIn(name, names)
        self.assertLess(names.index("retry_scheduled"), names.index("breaker_opened"))
        self.assertLess(names.index("breaker_opened"), names.index("fallback"))
        fallback = next(e for e in self.trace("trace-routed-1")["timeline"] if e["name"] == "fallback")
        self.assertEqual((fallback["from"], fallback["to"]), ("dead", MODEL))

        # The breaker is open now: the next request skips the dead deployment without trying it.
        self.client.chat.completions.create(**body, extra_headers={"x-request-id": "trace-routed-2"})
        timeline = self.trace("trace-routed-2")["timeline"]
        skipped = [e for e in timeline if e["name"] == "deployment_skipped"]
        self.assertEqual([(e["deployment"], e["reason"]) for e in skipped], [("dead", "circuit breaker open")])
        self.assertEqual([e["deployment"] for e in timeline if e["name"] == "upstream_attempt"], [MODEL])

        _, root = self.collector.root_of("trace-routed-1")
        attempts = [s for _, s in self.collector.spans() if s.get("parentSpanId") == root["spanId"] and s["name"] == "upstream_attempt"]
        self.assertEqual(len(attempts), 3)
        self.assertTrue(all(s["kind"] == 3 for s in attempts), "upstream attempts are client spans")

    def test_refused_request_has_a_trace_and_unknown_ids_are_404(self):
        with self.assertRaises(openai.NotFoundError):
            self.client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}],
                                                extra_headers={"x-request-id": "trace-refused-1"})
        t = self.trace("trace-refused-1")
        self.assertEqual(t["status"], 404)
        refused = next(e for e in t["timeline"] if e["name"] == "refused")
        self.assertEqual(refused["code"], "model_not_found")
        self.assertIn("no-such-model", t["error"])
        status, body = get(f"{self.server.url}/admin/requests/never-seen")
        self.assertEqual(status, 404)
        self.assertIn("never-seen", body["error"]["message"])

    def test_recent_requests_newest_first(self):
        for i in range(3):
            self.client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=2, extra_headers={"x-request-id": f"trace-recent-{i}"})
        status, body = get(f"{self.server.url}/admin/requests?limit=2")
        self.assertEqual(status, 200)
        self.assertEqual([r["request_id"] for r in body["data"]], ["trace-recent-2", "trace-recent-1"])
        self.assertNotIn("timeline", body["data"][0])
        t = self.trace("trace-recent-0")
        self.assertEqual(t["operation"], "text_completion")
        _, root = self.collector.root_of("trace-recent-0")
        self.assertEqual(root["name"], f"text_completion {MODEL}")


if __name__ == "__main__":
    run_with_tern()
