#!/usr/bin/env python3
"""End-to-end tests of prompt-cache retention in `tern serve`, through the anthropic and openai SDKs:
cache_control breakpoints (5m / 1h, on system and message blocks, top level) and
prompt_cache_retention="24h" keep a prefix cached while other traffic churns a small KV pool (an
unpinned prefix of the same size is evicted); usage reports cache writes and reads in both shapes
(cache_creation.ephemeral_5m / 1h, prompt_tokens_details.cache_write_tokens); the per-org quota
(--kv-pin-quota) caps pins and says so in usage; usage.cost prices 1-hour writes at their own price;
bad cache_control is a 400 naming the field; the pin metrics; `tern bench` as a Messages client with
cache_control (writes and reads counted and priced).

    python tests/api/prompt_cache_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the SDKs are missing.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unittest
import urllib.request

try:
    import anthropic
    import openai
except ImportError:
    print("SKIP: the anthropic / openai packages are not installed (scripts/test.sh installs them in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, run_with_tern

TERN = None
MODEL = "smollm2-135m"
# SmolLM2's KV cache takes 360 KiB per 16-token block: 40 MiB is ~113 blocks (~1800 tokens), so a few
# 300-token prompts churn the whole pool; up to 90 % of it may be pinned (the tests pin ~80 blocks).
KV = "40M"
WORDS = ("river stone cloud tiger lamp orbit maple violet engine harbor candle meadow falcon quartz "
         "silver thunder willow copper garden lantern").split()


def text(seed, words=300):
    """A deterministic paragraph (~300 tokens) that no other seed shares a prefix with."""
    rng = random.Random(seed)
    return f"Document {seed}: " + " ".join(rng.choice(WORDS) for _ in range(words))


def metrics(url):
    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line.startswith("tern:") and " " in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def metric(values, name):
    return sum(v for k, v in values.items() if k.split("{")[0] == name)


class Retention(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = TernServe(TERN, ["-m", MODEL, "--kv-cache-memory", KV, "--context", "1024", "--kv-pin-fraction", "0.9"])
        cls.anthropic = anthropic.Anthropic(base_url=cls.server.url, api_key="unused", max_retries=0)
        cls.openai = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def ask(self, system, question, ttl=None, top_level=None):
        block = {"type": "text", "text": system}
        if ttl:
            block["cache_control"] = {"type": "ephemeral", "ttl": ttl}
        extra = {"cache_control": {"type": "ephemeral", "ttl": top_level}} if top_level else {}
        return self.anthropic.messages.create(model=MODEL, max_tokens=2, system=[block],
                                              messages=[{"role": "user", "content": question}], extra_body=extra).usage

    def churn(self, seed, n=5):
        for i in range(n):
            self.openai.completions.create(model=MODEL, prompt=text(seed * 100 + i), max_tokens=1)

    def test_a_pinned_system_prompt_survives_churn_that_evicts_an_unpinned_one(self):
        pinned, plain = text(1), text(2)
        first = self.ask(pinned, "Question one?", ttl="5m")
        self.assertEqual(first.cache_read_input_tokens, 0)
        self.assertGreater(first.cache_creation_input_tokens, 200)
        self.assertEqual(first.cache_creation_input_tokens % 16, 0, "whole blocks are retained")
        self.assertEqual(first.cache_creation.ephemeral_5m_input_tokens, first.cache_creation_input_tokens)
        self.assertEqual(first.cache_creation.ephemeral_1h_input_tokens, 0)
        unpinned = self.ask(plain, "Question one?")
        self.assertEqual(unpinned.cache_creation_input_tokens, 0, "no cache_control: no retention, no write")
        self.churn(seed=1)
        again = self.ask(pinned, "Question two?", ttl="5m")
        self.assertGreaterEqual(again.cache_read_input_tokens, first.cache_creation_input_tokens)
        self.assertEqual(again.cache_creation_input_tokens, 0, "the prefix was read, not written again")
        self.assertEqual(again.input_tokens + again.cache_read_input_tokens + again.cache_creation_input_tokens,
                         first.input_tokens + first.cache_read_input_tokens + first.cache_creation_input_tokens)
        evicted = self.ask(plain, "Question two?")
        self.assertEqual(evicted.cache_read_input_tokens, 0, "the unpinned prefix was evicted by the churn")

    def test_one_hour_breakpoints_and_the_top_level_form(self):
        first = self.ask(text(3), "Summarise.", ttl="1h")
        self.assertGreater(first.cache_creation.ephemeral_1h_input_tokens, 200)
        self.assertEqual(first.cache_creation.ephemeral_5m_input_tokens, 0)
        top = self.ask(text(4), "Summarise.", top_level="5m")
        self.assertGreater(top.cache_creation.ephemeral_5m_input_tokens, 200, "top level: up to the end of the last message")
        values = metrics(self.server.url)
        self.assertGreater(metric(values, "tern:kv_pinned_blocks"), 0)
        self.assertGreater(values['tern:prefix_cache_write_tokens_total{model_name="smollm2-135m",ttl_seconds="3600"}'], 0)

    def test_openai_prompt_cache_retention_24h(self):
        prompt = text(5)
        first = self.openai.chat.completions.create(model=MODEL, max_tokens=2, temperature=0, prompt_cache_retention="24h",
                                                    prompt_cache_key="session-5", messages=[{"role": "user", "content": prompt}])
        details = first.usage.prompt_tokens_details
        self.assertEqual(details.cached_tokens, 0)
        self.assertGreater(details.cache_write_tokens, 200)
        self.churn(seed=5)
        again = self.openai.chat.completions.create(model=MODEL, max_tokens=2, temperature=0, prompt_cache_retention="24h",
                                                    messages=[{"role": "user", "content": prompt}])
        self.assertGreaterEqual(again.usage.prompt_tokens_details.cached_tokens, details.cache_write_tokens)
        self.assertIsNone(again.usage.prompt_tokens_details.cache_write_tokens, "absent when nothing was written")
        plain = self.openai.chat.completions.create(model=MODEL, max_tokens=2, prompt_cache_retention="in_memory",
                                                    messages=[{"role": "user", "content": "hello"}])
        self.assertIsNone(plain.usage.prompt_tokens_details.cache_write_tokens)

    def test_bad_cache_control_is_a_400_naming_the_field(self):
        bad = [({"type": "ephemeral", "ttl": "2h"}, "ttl"), ({"type": "persistent"}, "type")]
        for control, field in bad:
            with self.assertRaises(anthropic.BadRequestError) as e:
                self.anthropic.messages.create(model=MODEL, max_tokens=2, messages=[
                    {"role": "user", "content": [{"type": "text", "text": "x", "cache_control": control}]}])
            self.assertIn(f"messages.0.content.0.cache_control.{field}", str(e.exception))
        with self.assertRaises(openai.BadRequestError) as e:
            self.openai.chat.completions.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "x"}],
                                                extra_body={"prompt_cache_retention": "forever"})
        self.assertIn("prompt_cache_retention", str(e.exception))


class BenchMessages(unittest.TestCase):
    """tern bench as an Anthropic client (a target with "api": "messages"), on a server of its own."""

    @classmethod
    def setUpClass(cls):
        cls.server = TernServe(TERN, ["-m", MODEL, "--kv-cache-memory", "80M", "--context", "1024"])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_tern_bench_speaks_messages_with_cache_control(self):
        """tern bench against the Messages API: sessions that share a system prompt, cache_control 5m on
        it and on the conversation; the report counts the writes and reads and prices the writes."""
        with tempfile.TemporaryDirectory(prefix="tern-bench-messages-") as tmp:
            price = {"input_per_mtok": 1.0, "cached_input_per_mtok": 0.1, "cache_write_per_mtok": 1.25,
                     "cache_write_1h_per_mtok": 2.0, "output_per_mtok": 5.0}
            workload = {"seed": 7, "prefix": {"groups": 1, "length_tokens": 300},
                        "sessions": {"turns": 2, "think_time_ms": 0}, "input_tokens": 40, "output_tokens": 3,
                        "ignore_eos": True, "cache_retention": "5m", "arrival": {"type": "concurrency", "concurrency": 1},
                        "requests": 4, "targets": [{"name": "tern", "url": self.server.url + "/v1", "api": "messages",
                                                     "model": MODEL, "price": price}]}
            path, report_path = os.path.join(tmp, "w.json"), os.path.join(tmp, "r.json")
            with open(path, "w") as f:
                json.dump(workload, f)
            run = subprocess.run([TERN, "bench", "--workload", path, "--json", report_path, "--json-requests", "-q",
                                  "--tokenizer", MODEL], capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stderr + run.stdout)
            with open(report_path) as f:
                report = json.load(f)
        result = report["results"][0]
        self.assertEqual(result["requests"]["ok"], 4, run.stdout)
        tokens = result["tokens"]
        self.assertEqual(tokens["output"]["server"], 12, "ignore_eos: exactly max_tokens each")
        self.assertGreater(tokens["cache_write"], 300, "the first session writes its system prompt and turns")
        self.assertEqual(tokens["cache_write_1h"], 0, "5-minute writes")
        self.assertGreater(tokens["cached"], 300, "the second session reads the shared system prompt")
        self.assertIn(f"written {tokens['cache_write']} (0 kept 1h+)", run.stdout, "the text report counts the writes")
        for r in report["requests"]:
            usage = r["usage"]
            self.assertGreater(usage["prompt_tokens"], 300)
            self.assertGreaterEqual(usage["prompt_tokens"], usage["cached_tokens"] + usage["cache_write_tokens"])
            if r["turn"] == 1:
                self.assertGreater(usage["cached_tokens"], 300, "a returning turn reads its history")
        prompt, cached, written = tokens["prompt"]["server"], tokens["cached"], tokens["cache_write"]
        expected = ((prompt - cached - written) * 1.0 + cached * 0.1 + written * 1.25 + 12 * 5.0) / 1e6
        self.assertAlmostEqual(result["cost"]["effective_usd"], expected, places=12)


CONFIG = """
models:
  - name: smollm2
    model: smollm2-135m
    kv_cache_memory: 40M
    context: 1024
    kv_pin_quota: 2M
    prices: {input: 1.0, cached_input: 0.1, cache_write: 1.25, cache_write_1h: 2.0, output: 5.0}
"""


class OrgQuota(unittest.TestCase):
    """--kv-pin-quota / kv_pin_quota: each org pins at most that much; the rest is cached as usual."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="tern-pin-quota-")
        keys_db = os.path.join(cls.dir.name, "keys.db")
        config = os.path.join(cls.dir.name, "tern.yaml")
        with open(config, "w") as f:
            f.write(CONFIG)

        def create_key(name, org):
            p = subprocess.run([TERN, "keys", "--keys-db", keys_db, "create", "--name", name, "--org", org],
                               capture_output=True, text=True, timeout=60, check=True)
            return p.stdout.strip()

        cls.acme, cls.beta = create_key("a", "acme"), create_key("b", "beta")
        cls.server = TernServe(TERN, ["--config", config, "--keys-db", keys_db])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.dir.cleanup()

    def ask(self, key, seed):
        client = anthropic.Anthropic(base_url=self.server.url, api_key=key, max_retries=0)
        system = [{"type": "text", "text": text(seed), "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
        message = client.messages.create(model="smollm2", max_tokens=2, system=system, messages=[{"role": "user", "content": "Hi"}])
        return message.usage

    def test_each_org_pins_up_to_its_quota_and_usage_says_the_rest_was_not_retained(self):
        first = self.ask(self.acme, 10)
        # 2 MiB of 360 KiB blocks: 5 blocks, 80 tokens.
        self.assertEqual(first.cache_creation_input_tokens, 80)
        self.assertEqual(first.cache_creation.ephemeral_1h_input_tokens, 80)
        denied = first.model_extra["cache_retention_denied_tokens"]
        self.assertGreater(denied, 150)
        prompt = first.input_tokens + first.cache_read_input_tokens + first.cache_creation_input_tokens
        expected = ((prompt - 80) * 1.0 + 80 * 2.0 + first.output_tokens * 5.0) / 1e6
        self.assertAlmostEqual(first.model_extra["cost"], expected, places=12)
        full = self.ask(self.acme, 11)
        self.assertEqual(full.cache_creation_input_tokens, 0, "acme's quota is full")
        self.assertGreater(full.model_extra["cache_retention_denied_tokens"], 150)
        other = self.ask(self.beta, 12)
        self.assertEqual(other.cache_creation_input_tokens, 80, "another org has its own quota")


class DiskTier(unittest.TestCase):
    """--kv-disk-cache: a prompt computed before a restart is read back from disk, with the same output;
    damaged files are detected and recomputed, never served."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="tern-kv-disk-")
        self.addCleanup(self.dir.cleanup)

    def serve(self):
        return TernServe(TERN, ["-m", MODEL, "--context", "1024", "--kv-disk-cache", self.dir.name, "--kv-disk-bytes", "1G"])

    def complete(self, server, prompt):
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0)
        return r.choices[0].text, r.usage.prompt_tokens_details.cached_tokens, r.usage.prompt_tokens

    def test_a_restarted_server_reads_the_prompt_back_and_a_damaged_store_is_recomputed(self):
        prompt = text(30, words=700)
        server = self.serve()
        try:
            first, cached, prompt_tokens = self.complete(server, prompt)
            self.assertEqual(cached, 0)
            misses = metrics(server.url)['tern:kv_disk_lookups_total{model_name="smollm2-135m",result="miss"}']
            self.assertGreater(misses, 0, "an empty store: the prompt's first block was looked up there and not found")
        finally:
            server.stop()  # SIGTERM: queued blocks are written before it exits
        files = [os.path.join(root, f) for root, _, names in os.walk(self.dir.name) for f in names if f.endswith(".kv")]
        self.assertGreaterEqual(len(files), prompt_tokens // 16 - 1)
        server = self.serve()
        try:
            self.assertTrue(any("already there" in line for line in server.log))
            again, cached, _ = self.complete(server, prompt)
            self.assertEqual(again, first, "K/V read from disk give the same tokens as computing them")
            self.assertGreaterEqual(cached, prompt_tokens - 16)
            values = metrics(server.url)
            self.assertGreaterEqual(metric(values, "tern:kv_disk_hit_tokens_total"), cached)
            hits = values['tern:kv_disk_lookups_total{model_name="smollm2-135m",result="hit"}']
            self.assertGreaterEqual(hits * 16, cached)
            self.assertEqual(metric(values, "tern:kv_disk_read_bytes_total") % hits, 0, "whole blocks")
        finally:
            server.stop()
        for path in files:  # damage every block
            with open(path, "r+b") as f:
                f.seek(-3, os.SEEK_END)
                byte = f.read(1)
                f.seek(-3, os.SEEK_END)
                f.write(bytes([byte[0] ^ 0xFF]))
        server = self.serve()
        try:
            third, cached, _ = self.complete(server, prompt)
            self.assertEqual(third, first)
            self.assertEqual(cached, 0, "a damaged block is recomputed, never served")
            values = metrics(server.url)
            self.assertGreater(values['tern:kv_disk_evictions_total{model_name="smollm2-135m",reason="corrupt"}'], 0)
        finally:
            server.stop()


if __name__ == "__main__":
    run_with_tern()
