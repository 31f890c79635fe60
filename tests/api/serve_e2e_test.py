#!/usr/bin/env python3
"""End-to-end tests of `tern serve` on the real default model, through real clients: the official
openai SDK, curl and raw sockets. Run by ctest (label "full"); scripts/test.sh makes the venv.

    python tests/api/serve_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the openai package is missing.
"""
import argparse
import concurrent.futures as futures
import json
import os
import signal
import socket
import subprocess
import sys
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

from tern_process import TernServe, exit_unless_default_model

TERN = None
MODEL = "smollm2-135m"


class Server(TernServe):
    """A `tern serve` process on a free port; its stderr is kept for failure messages."""

    def __init__(self, *extra):
        super().__init__(TERN, ["-m", MODEL, "--kv-cache-memory", "256M", *extra])
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=120)

    def get(self, path):
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post(self, path, body, raw=False):
        data = body if raw else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def metric(self, name):
        """Sum of a metric's samples (all label sets)."""
        _, text = self.get("/metrics")
        total, seen = 0.0, False
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
                seen = True
        if not seen:
            raise AssertionError(f"metric {name} missing from /metrics")
        return total



def thread_count(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def stream_chat(client, messages, **kw):
    """Streams a chat; returns (text, finish_reason, usage, ttft seconds)."""
    start = time.perf_counter()
    ttft = None
    text, finish, usage = "", None, None
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                            stream_options={"include_usage": True}, **kw)
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                if ttft is None:
                    ttft = time.perf_counter() - start
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
    return text, finish, usage, ttft


class ServeTest(unittest.TestCase):
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.client = self.server.client

    # --- endpoints ---------------------------------------------------------------------------
    def test_health_ready_models(self):
        self.assertEqual(self.server.get("/health")[0], 200)
        status, body = self.server.get("/ready")
        self.assertEqual(status, 200, body)
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [MODEL])

    def test_chat_not_streamed(self):
        r = self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hello."}],
                                                max_tokens=16, temperature=0)
        self.assertTrue(r.id.startswith("chatcmpl-"))
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertTrue(r.choices[0].message.content)
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(r.usage.prompt_tokens, 0)
        self.assertLessEqual(r.usage.completion_tokens, 16)
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        self.assertIsInstance(r.usage.prompt_tokens_details.cached_tokens, int)

    def test_chat_streamed_with_usage(self):
        text, finish, usage, _ = stream_chat(self.client, [{"role": "user", "content": "Count to five."}],
                                             max_tokens=12, temperature=0)
        self.assertTrue(text)
        self.assertIn(finish, ("stop", "length"))
        self.assertIsNotNone(usage)
        self.assertIsInstance(usage.prompt_tokens_details.cached_tokens, int)
        # The streamed text is the non-streamed text.
        r = self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count to five."}],
                                                max_tokens=12, temperature=0)
        self.assertEqual(text, r.choices[0].message.content)

    def test_completions(self):
        r = self.client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
        self.assertEqual(r.object, "text_completion")
        self.assertEqual(r.usage.completion_tokens, len([1 for _ in range(8)]) if r.choices[0].finish_reason == "length" else r.usage.completion_tokens)
        text = ""
        for chunk in self.client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                                                    temperature=0, stream=True):
            text += chunk.choices[0].text if chunk.choices else ""
        self.assertEqual(text, r.choices[0].text)

    def test_completions_default_max_tokens_is_16(self):
        r = self.client.completions.create(model=MODEL, prompt="Once upon a time", temperature=0,
                                           extra_body={"ignore_eos": True})
        self.assertEqual(r.usage.completion_tokens, 16)
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_logprobs(self):
        r = self.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                                temperature=0, logprobs=True, top_logprobs=3)
        content = r.choices[0].logprobs.content
        self.assertEqual(len(content), r.usage.completion_tokens)
        for entry in content:
            self.assertLessEqual(entry.logprob, 0.0)
            self.assertEqual(len(entry.top_logprobs), 3)
            # Greedy: the chosen token is the most likely one.
            self.assertAlmostEqual(entry.logprob, entry.top_logprobs[0].logprob, places=5)

    def test_stop_strings(self):
        r = self.client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0,
                                           stop=[" 8"])
        self.assertNotIn(" 8", r.choices[0].text)
        self.assertEqual(r.choices[0].finish_reason, "stop")

    def test_curl_streams_sse(self):
        body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                           "stream": True})
        out = subprocess.run(["curl", "-sN", "-H", "Content-Type: application/json", "-d", body,
                              self.server.url + "/v1/chat/completions"], capture_output=True, text=True, timeout=60)
        events = [line[6:] for line in out.stdout.splitlines() if line.startswith("data: ")]
        self.assertEqual(events[-1], "[DONE]")
        for event in events[:-1]:
            self.assertEqual(json.loads(event)["object"], "chat.completion.chunk")

    # --- batching, determinism, caching ---------------------------------------------------------
    def test_64_concurrent_streams(self):
        def one(i):
            text, finish, usage, _ = stream_chat(self.client, [{"role": "user", "content": f"Tell me about the number {i}."}],
                                                 max_tokens=24, temperature=0.7, seed=i, extra_body={"ignore_eos": True})
            return text, finish, usage

        with futures.ThreadPoolExecutor(64) as pool:
            results = list(pool.map(one, range(64)))
        for text, finish, usage in results:
            self.assertEqual(finish, "length")
            self.assertEqual(usage.completion_tokens, 24)
            self.assertTrue(text)

    def test_same_seed_same_text(self):
        kw = dict(model=MODEL, messages=[{"role": "user", "content": "Write a short poem about the sea."}],
                  max_tokens=32, temperature=1.0, top_p=0.95, seed=1234)
        a = self.client.chat.completions.create(**kw).choices[0].message.content
        b = self.client.chat.completions.create(**kw).choices[0].message.content
        self.assertEqual(a, b)

    def test_greedy_same_alone_and_in_batch_of_32(self):
        probe = [{"role": "user", "content": "Explain what a compiler does."}]
        alone = self.client.chat.completions.create(model=MODEL, messages=probe, max_tokens=48, temperature=0)
        alone_text = alone.choices[0].message.content

        def other(i):
            return self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Describe city number {i} in detail."}],
                max_tokens=48, temperature=0).choices[0].message.content

        with futures.ThreadPoolExecutor(32) as pool:
            others = [pool.submit(other, i) for i in range(31)]
            in_batch = pool.submit(lambda: self.client.chat.completions.create(
                model=MODEL, messages=probe, max_tokens=48, temperature=0).choices[0].message.content)
            for f in others:
                f.result()
            self.assertEqual(in_batch.result(), alone_text)

    def test_shared_prefix_is_cached_and_faster(self):
        system = "You are a meticulous assistant. " + " ".join(
            f"Rule {i}: answer precisely, cite the relevant rule, and keep a calm tone." for i in range(60))
        first = stream_chat(self.client, [{"role": "system", "content": system}, {"role": "user", "content": "Hello?"}],
                            max_tokens=4, temperature=0)
        second = stream_chat(self.client, [{"role": "system", "content": system}, {"role": "user", "content": "Hi there?"}],
                             max_tokens=4, temperature=0)
        self.assertGreater(first[2].prompt_tokens, 512)
        self.assertGreater(second[2].prompt_tokens_details.cached_tokens, 512)
        self.assertLess(second[3], first[3], f"TTFT with cache {second[3]:.3f}s, without {first[3]:.3f}s")

    def test_disconnect_frees_blocks(self):
        aborted_before = self.server.metric("tern:request_success_total{model_name=\"smollm2-135m\",finished_reason=\"abort\"}")
        body = json.dumps({"model": MODEL, "prompt": "Tell me a very long story.", "max_tokens": 4000, "stream": True,
                           "ignore_eos": True}).encode()
        sock = socket.create_connection(("127.0.0.1", self.server.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        received = b""
        while received.count(b"data: ") < 3:
            received += sock.recv(65536)
        self.assertGreater(self.server.metric("tern:kv_cache_usage_perc"), 0)
        sock.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.server.metric("tern:num_requests_running") == 0 and self.server.metric("tern:kv_cache_usage_perc") == 0:
                break
            time.sleep(0.05)
        self.assertEqual(self.server.metric("tern:num_requests_running"), 0)
        self.assertEqual(self.server.metric("tern:kv_cache_usage_perc"), 0)
        aborted = self.server.metric("tern:request_success_total{model_name=\"smollm2-135m\",finished_reason=\"abort\"}")
        self.assertEqual(aborted, aborted_before + 1)

    def test_metrics_names(self):
        _, text = self.server.get("/metrics")
        for name in ["tern:num_requests_running", "tern:num_requests_waiting", "tern:kv_cache_usage_perc",
                     "tern:prefix_cache_queries_total", "tern:prefix_cache_hits_total", "tern:prompt_tokens_total",
                     "tern:generation_tokens_total", "tern:num_preemptions_total", "tern:request_success_total",
                     "tern:time_to_first_token_seconds_bucket", "tern:inter_token_latency_seconds_bucket",
                     "tern:e2e_request_latency_seconds_bucket", "tern:request_queue_time_seconds_bucket",
                     "tern:request_prefill_time_seconds_bucket", "tern:request_decode_time_seconds_bucket",
                     "tern:iteration_tokens_total_bucket"]:
            self.assertIn(name, text)

    # --- bad input ---------------------------------------------------------------------------------
    def error_of(self, body, path="/v1/chat/completions", raw=False):
        status, _, text = self.server.post(path, body, raw=raw)
        return status, json.loads(text)["error"]

    def test_errors(self):
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
        status, err = self.error_of(b"{not json", raw=True)
        self.assertEqual(status, 400)
        self.assertIn("JSON", err["message"])
        status, err = self.error_of({**chat, "model": "gpt-9"})
        self.assertEqual((status, err["code"], err["param"]), (404, "model_not_found", "model"))
        status, err = self.error_of({**chat, "temperature": "hot"})
        self.assertEqual((status, err["param"]), (400, "temperature"))
        status, err = self.error_of({**chat, "temperature": 7})
        self.assertEqual((status, err["param"]), (400, "temperature"))
        status, err = self.error_of({**chat, "n": 3})
        self.assertEqual((status, err["param"]), (400, "n"))
        status, err = self.error_of({**chat, "tools": [{"type": "function", "function": {"name": "f f"}}]})
        self.assertEqual((status, err["param"]), (400, "tools[0].function.name"))
        status, err = self.error_of({**chat, "frobnicate": 1})
        self.assertEqual((status, err["param"]), (400, "frobnicate"))
        status, err = self.error_of({**chat, "max_tokens": 100000})
        self.assertEqual(status, 400)
        self.assertIn("context length", err["message"])
        status, err = self.error_of({"model": MODEL, "prompt": "x " * 9000}, path="/v1/completions")
        self.assertEqual(status, 400)
        status, err = self.error_of({"model": MODEL, "prompt": "x" * (5 << 20)}, path="/v1/completions")
        self.assertEqual(status, 413)
        status, _ = self.server.get("/v1/nothing")
        self.assertEqual(status, 404)
        # The server is still fine.
        self.assertEqual(self.server.get("/health")[0], 200)
        with self.assertRaises(openai.BadRequestError):
            self.client.chat.completions.create(model=MODEL, messages=[], max_tokens=4)

    def test_garbage_bytes_do_not_crash(self):
        for payload in [b"\x00\xff" * 1000, b"GET / HTTP/1.1\r\nHost: " + b"a" * 20000 + b"\r\n\r\n",
                        b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n"]:
            with socket.create_connection(("127.0.0.1", self.server.port)) as s:
                s.sendall(payload)
                s.settimeout(5)
                try:
                    s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    pass
        self.assertEqual(self.server.get("/health")[0], 200)


class LifecycleTest(unittest.TestCase):
    """Servers of their own: timeouts, admission control, graceful shutdown."""

    def test_slow_client_times_out(self):
        server = Server("--read-timeout", "1")
        try:
            with socket.create_connection(("127.0.0.1", server.port)) as s:
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # and then nothing
                # The server must close it; a server that never does trips the socket's own timeout
                # (10x the configured one: a liveness bound, not a timing check) and the test errors.
                s.settimeout(10)
                self.assertEqual(s.recv(100), b"")
        finally:
            server.stop()

    def test_full_queue_gets_429(self):
        server = Server("--max-running", "1", "--max-waiting", "1")
        try:
            body = {"model": MODEL, "prompt": "Go on:", "max_tokens": 200, "ignore_eos": True}
            with futures.ThreadPoolExecutor(6) as pool:
                results = list(pool.map(lambda _: server.post("/v1/completions", body), range(6)))
            statuses = sorted(r[0] for r in results)
            self.assertIn(200, statuses)
            self.assertIn(429, statuses)
            for status, headers, _ in results:
                if status == 429:
                    self.assertEqual(headers.get("Retry-After"), "1")
        finally:
            server.stop()

    def test_2000_open_streaming_connections(self):
        """2,000 clients stream at once; the server keeps every connection on its fixed threads."""
        import resource
        import selectors
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < 2200:
            self.skipTest(f"the descriptor limit {hard} is under 2,200")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        server = Server()
        try:
            threads_before = thread_count(server.proc.pid)
            body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 3, "stream": True,
                               "ignore_eos": True}).encode()
            request = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            sel = selectors.DefaultSelector()
            received = {}
            for _ in range(2000):
                sock = socket.create_connection(("127.0.0.1", server.port))
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ)
                received[sock] = b""
            for sock in received:
                sock.sendall(request)
            peak_connections = server.metric("tern:http_connections_open")
            threads_during = thread_count(server.proc.pid)
            done = 0
            deadline = time.time() + 600
            while done < len(received) and time.time() < deadline:
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(65536)
                    received[key.fileobj] += data
                    if not data or received[key.fileobj].endswith(b"0\r\n\r\n"):
                        sel.unregister(key.fileobj)
                        done += 1
            complete = sum(1 for r in received.values() if r.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in r)
            for sock in received:
                sock.close()
            self.assertGreaterEqual(peak_connections, 2000)
            self.assertEqual(threads_during, threads_before)
            self.assertEqual(complete, 2000)
        finally:
            server.stop()

    def test_sigterm_drains_in_flight_requests(self):
        server = Server("--drain-timeout", "60")
        client = server.client
        result = {}

        def long_request():
            result["r"] = stream_chat(client, [{"role": "user", "content": "Tell me a story."}], max_tokens=64,
                                      temperature=0, extra_body={"ignore_eos": True})

        t = threading.Thread(target=long_request)
        t.start()
        deadline = time.time() + 30
        while server.metric("tern:num_requests_running") < 1 and time.time() < deadline:
            time.sleep(0.02)
        server.proc.send_signal(signal.SIGTERM)
        t.join(60)
        self.assertEqual(server.proc.wait(60), 0, "".join(server.log))
        text, finish, usage, _ = result["r"]
        self.assertEqual(finish, "length")
        self.assertEqual(usage.completion_tokens, 64)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", required=True)
    args, rest = parser.parse_known_args()
    TERN = os.path.abspath(args.tern)
    exit_unless_default_model()
    unittest.main(argv=[sys.argv[0], *rest])
