#!/usr/bin/env python3
"""End to end: replica routing in tern's gateway. Two `tern serve` replicas publish their KV-cache
events (--kv-events-endpoint) to a gateway (`tern serve --config`, `kv_events: {listen}`) whose routes
use the `kv-events` policy (the replica holding most of the prompt's prefix, from those events) and the
`random` policy.

- a prefix cached on a replica (sent there with provider.only) draws the next request sharing it to
  that replica, whichever replica the prefix's hash prefers - six prefixes alternating between the
  replicas, each followed request answered from cache (usage.prompt_tokens_details.cached_tokens);
- a prefix cached on both replicas draws its requests to the one with fewer requests in flight;
- a prefix cached on one replica stays there while that replica's queued work (short streams) weighs
  less than recomputing it on the idle one, and moves once it weighs more (a long stream);
- a prompt whose prefill is still running on a replica draws a request sharing it to that replica;
- random routing spreads requests over both replicas;
- malformed messages on the gateway's event socket are counted (tern:kv_index_bad_messages_total) and
  change nothing;
- the gateway's /metrics count the events it applied.

    python tests/api/replica_routing_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the packages are missing.
"""
import json
import os
import sys
import tempfile
import threading
import time
import unittest
import urllib.request

try:
    import openai
    import zmq
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, free_port, run_with_tern

TERN = None
MODEL = "smollm2-135m"


def metric(url, name):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


class ReplicaRouting(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.events_port = free_port()
        endpoint = f"tcp://127.0.0.1:{cls.events_port}"
        cls.replicas = [TernServe(TERN, ["-m", MODEL, "--threads", "1", "--context", "2048", "--kv-events-endpoint", endpoint,
                                         "--kv-events-pod", f"replica-{i}"]) for i in (1, 2)]
        cls.dir = tempfile.mkdtemp(prefix="tern-replicas-")
        config = os.path.join(cls.dir, "tern.yaml")
        deployments = "\n".join(f"  - {{name: replica-{i}, kind: openai, base_url: \"{r.url}/v1\", model: {MODEL}}}"
                                for i, r in zip((1, 2), cls.replicas))
        with open(config, "w") as f:
            f.write(f"kv_events: {{listen: \"{endpoint}\"}}\n"
                    f"deployments:\n{deployments}\n"
                    "routes:\n"
                    f"  - {{name: events, deployments: [replica-1, replica-2], policy: kv-events, tokenizer: {MODEL}}}\n"
                    "  - {name: spread, deployments: [replica-1, replica-2], policy: random}\n")
        cls.gateway = TernServe(TERN, ["--config", config])
        cls.client = openai.OpenAI(base_url=cls.gateway.url + "/v1", api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        for r in cls.replicas:
            r.stop()

    def chat(self, model, system, user, only=None):
        """(deployment that answered, cached prompt tokens)."""
        extra = {"provider": {"only": [only]}} if only else {}
        raw = self.client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], max_tokens=2,
            temperature=0, extra_body=extra)
        completion = raw.parse()
        trace = json.load(urllib.request.urlopen(f"{self.gateway.url}/admin/requests/{raw.headers['x-request-id']}", timeout=10))
        details = completion.usage.prompt_tokens_details
        return trace["deployment"], (details.cached_tokens if details else 0) or 0

    def wait_for_blocks(self, at_least, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            blocks = metric(self.gateway.url, "tern:kv_index_blocks") or 0
            if blocks >= at_least:
                return blocks
            time.sleep(0.05)
        self.fail(f"the gateway's index holds fewer than {at_least} blocks after {timeout} s")

    def cache_on(self, home, system, blocks):
        """Computes `system` on `home` (provider.only) and waits until `blocks` of its blocks reached the gateway."""
        before = metric(self.gateway.url, "tern:kv_index_blocks") or 0
        self.assertEqual(self.chat("events", system, "hello", only=home)[0], home)
        self.wait_for_blocks(before + blocks)

    def test_a_cached_prefix_draws_requests_to_its_replica(self):
        for i in range(6):
            system = f"You are support agent {i} of the river company. " + "Answer with care, cite the manual, be brief. " * 30
            home = f"replica-{1 + i % 2}"
            self.cache_on(home, system, 10)
            deployment, cached = self.chat("events", system, f"question {i}: what is two and two?")
            self.assertEqual(deployment, home, f"prefix {i} is cached on {home}: the kv-events route sends it there")
            self.assertGreater(cached, 200, f"prefix {i}: the shared system prompt came from {home}'s cache")

    def test_a_prefix_on_both_replicas_goes_to_the_less_loaded(self):
        system = "You are the harbour master's assistant. " + "Quote the tide tables, give times in UTC, be brief. " * 30
        for home in ("replica-1", "replica-2"):
            self.cache_on(home, system, 10)
        for busy, idle in (("replica-1", "replica-2"), ("replica-2", "replica-1")):
            stream = self.stream_on(busy, 400)  # keeps one request in flight on `busy`
            try:
                deployment, cached = self.chat("events", system, f"When is high water at {busy}?")
                self.assertEqual(deployment, idle, f"both replicas hold the prefix and {busy} is busy")
                self.assertGreater(cached, 200)
            finally:
                stream.close()

    def stream_on(self, deployment, max_tokens):
        """A stream through the gateway kept on `deployment`, its first chunk read (its prompt is done)."""
        stream = self.client.chat.completions.create(
            model="events", messages=[{"role": "user", "content": f"Count slowly, {deployment}."}], max_tokens=max_tokens,
            temperature=0, stream=True, extra_body={"provider": {"only": [deployment]}, "ignore_eos": True})
        next(iter(stream))
        return stream

    def test_a_cached_prefix_moves_only_when_its_replica_is_busier_than_recomputing_it(self):
        # ~650 prompt tokens: a move costs the other replica 2 x 650 token-equivalents of prefill; an
        # output token in flight counts 8 (docs/gateway.md, kv-events).
        system = "You are the lighthouse keeper's log. " + "Record the wind, the sea state and every ship in sight. " * 55
        self.cache_on("replica-1", system, 30)
        # Three short streams in flight on replica-1 (3 x 40 x 8 = 960 < 1,300): a count bound would
        # have moved the prompt to the idle replica; its holder is still the cheaper place.
        streams = [self.stream_on("replica-1", 40) for _ in range(3)]
        try:
            deployment, cached = self.chat("events", system, "Any ships tonight?")
        finally:
            for stream in streams:
                stream.close()
        self.assertEqual(deployment, "replica-1", "three short streams outweigh less than recomputing the prompt")
        self.assertGreater(cached, 500)
        # One long stream (400 x 8 = 3,200 > 1,300): now recomputing it on the idle replica is cheaper.
        stream = self.stream_on("replica-1", 400)
        try:
            deployment, _ = self.chat("events", system, "And the wind?")
            self.assertEqual(self.queued_work("replica-1"), 400 * 8, "the stream's prompt is done: its 400 output tokens x 8 are left")
        finally:
            stream.close()
        self.assertEqual(deployment, "replica-2", "a long queue on the holder outweighs recomputing the prompt")
        # Every request's charge is taken back when it ends (a closed stream included).
        deadline = time.time() + 10
        while time.time() < deadline and any(self.queued_work(r) != 0 for r in ("replica-1", "replica-2")):
            time.sleep(0.1)
        self.assertEqual([self.queued_work(r) for r in ("replica-1", "replica-2")], [0, 0])

    def queued_work(self, deployment):
        return metric(self.gateway.url, f'tern:deployment_queued_work_tokens{{deployment="{deployment}",kind="openai"}}')

    def test_a_prompt_being_computed_draws_requests_sharing_it(self):
        # Before its first token a replica has announced none of the prompt's blocks; the gateway
        # counts them as held there from the moment it sent the request.
        system = "You are the archive's index of river charts. " + "List each chart's year, scale, surveyor and soundings. " * 120
        first = {}

        def send_first():
            started = time.time()
            first["result"] = self.chat("events", system, "Which charts show the delta?")
            first["seconds"] = time.time() - started

        thread = threading.Thread(target=send_first)
        thread.start()
        time.sleep(0.5)
        deployment, _ = self.chat("events", system, "Which charts show the estuary?")
        thread.join()
        self.assertGreater(first["seconds"], 0.6, "the first prompt must still be computing when the second is routed")
        self.assertEqual(deployment, first["result"][0], "the second request went where its prompt was being computed")

    def test_random_spreads_over_both_replicas(self):
        seen = {self.chat("spread", f"Random spread {n}.", "hi")[0] for n in range(16)}
        self.assertEqual(seen, {"replica-1", "replica-2"})

    def test_malformed_events_are_counted_and_ignored(self):
        bad_before = metric(self.gateway.url, "tern:kv_index_bad_messages_total") or 0
        context = zmq.Context()
        pub = context.socket(zmq.PUB)
        pub.connect(f"tcp://127.0.0.1:{self.events_port}")
        try:
            deadline = time.time() + 10
            while (metric(self.gateway.url, "tern:kv_index_bad_messages_total") or 0) < bad_before + 3 and time.time() < deadline:
                pub.send_multipart([b"kv@intruder@" + MODEL.encode(), (7).to_bytes(8, "big"), b"\xc1 not msgpack"])
                pub.send_multipart([b"kv@intruder@" + MODEL.encode(), b"short", b"\x90"])
                pub.send_multipart([b"kv@intruder@" + MODEL.encode(), (8).to_bytes(8, "big"), b"\x92\xcb" + bytes(8) + b"\x91\x91\xa3Bad"])
                time.sleep(0.1)
        finally:
            pub.close(linger=0)
            context.term()
        self.assertGreaterEqual(metric(self.gateway.url, "tern:kv_index_bad_messages_total"), bad_before + 3)
        deployment, _ = self.chat("events", "After the noise.", "hello")
        self.assertIn(deployment, {"replica-1", "replica-2"}, "the gateway still routes")
        self.assertGreaterEqual(metric(self.gateway.url, "tern:kv_index_sources"), 2)


if __name__ == "__main__":
    run_with_tern()
