#!/usr/bin/env python3
"""End-to-end tests of LoRA adapters in `tern serve`, through the openai SDK and plain HTTP: adapters
from --lora (GGUF and PEFT) listed with their parent, requested by name and as "<base>:<name>",
concurrent requests of several adapters and the base model (each gets what it gets alone), runtime
load and unload (unload waits for the adapter's running requests), the LRU limit (--max-loras),
the lora_requests_info metric, and the endpoints admin-only once keys exist.

    python tests/api/lora_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model, the adapters or the SDK are missing.
"""
import argparse
import json
import os
import subprocess
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

from tern_process import TernServe, exit_unless_default_model

TERN = None
BASE = "smollm2-135m"
LORA = os.path.join(os.environ.get("TERN_HOME", os.path.expanduser("~/.cache/tern")), "fixtures", "lora")
PROMPTS = ["The capital of France is", "Once upon a time,", "def add(a, b):", "My favourite fruit is"]


def http(method, url, body=None, key=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text.startswith("{") else text
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def complete(client, model, prompt, max_tokens=12):
    r = client.completions.create(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0)
    return r.choices[0].text


class LoraServing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = TernServe(TERN, ["-m", BASE, "--lora", f"a={LORA}/smollm2-r16.gguf", "--lora", f"peft={LORA}/smollm2-r16-peft",
                                      "--lora", f"small={LORA}/smollm2-r8.gguf"])
        cls.client = openai.OpenAI(base_url=cls.server.url + "/v1", api_key="unused", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_adapters_are_listed_with_their_base_as_parent(self):
        models = {m.id: m for m in self.client.models.list().data}
        for name in ("a", "peft", "small"):
            self.assertIn(name, models)
            self.assertEqual(models[name].model_extra.get("parent"), BASE)
        self.assertIsNone(models[BASE].model_extra.get("parent"))

    def test_adapter_changes_the_output_and_peft_equals_gguf(self):
        differs = 0
        for prompt in PROMPTS:
            with_a = complete(self.client, "a", prompt)
            self.assertEqual(complete(self.client, "peft", prompt), with_a, "the PEFT directory and its GGUF give the same text")
            self.assertEqual(complete(self.client, f"{BASE}:a", prompt), with_a, "'<base>:<name>' names the same adapter")
            differs += complete(self.client, BASE, prompt) != with_a
        self.assertGreaterEqual(differs, 2, "the adapter should change the base model's continuations")

    def test_concurrent_requests_of_several_adapters_get_what_they_get_alone(self):
        jobs = [(model, prompt) for prompt in PROMPTS for model in (BASE, "a", "small")]
        alone = {job: complete(self.client, *job, max_tokens=16) for job in jobs}
        together = {}

        def run(job):
            together[job] = complete(self.client, *job, max_tokens=16)

        threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(together, alone)

    def test_chat_streams_with_an_adapter(self):
        stream = self.client.chat.completions.create(model="small", messages=[{"role": "user", "content": "Say hi."}],
                                                     max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        self.assertTrue(any(c.choices and c.choices[0].delta.content for c in chunks))
        self.assertEqual(chunks[-1].usage.completion_tokens, 8)
        self.assertEqual(chunks[0].model, "small")

    def test_request_trace_names_the_adapter(self):
        """GET /admin/requests/{id}: the adapter that answered, beside its base model's deployment."""
        self.client.chat.completions.create(model="small", messages=[{"role": "user", "content": "Say hi."}], max_tokens=4,
                                            extra_headers={"x-request-id": "lora-trace-1"})
        status, trace = http("GET", self.server.url + "/admin/requests/lora-trace-1")
        self.assertEqual(status, 200, trace)
        self.assertEqual(trace["adapter"], "small")
        self.assertEqual(trace["model"], "small")

    def test_load_and_unload_at_run_time(self):
        url = self.server.url
        status, body = http("POST", url + "/v1/load_lora_adapter", {"lora_name": "late", "lora_path": f"{LORA}/smollm2-r64.gguf"})
        self.assertEqual(status, 200, body)
        self.assertIn("late", [m.id for m in self.client.models.list().data])
        text = complete(self.client, "late", PROMPTS[0])
        # Refusals name the problem.
        for request, needle in [({"lora_name": "late", "lora_path": f"{LORA}/smollm2-r8.gguf"}, "already"),
                                ({"lora_name": "x", "lora_path": "/nonexistent.gguf"}, "does not exist"),
                                ({"lora_name": "g", "lora_path": f"{LORA}/gemma3-r8.gguf"}, "architecture 'gemma3'"),
                                ({"lora_name": "bad name!", "lora_path": f"{LORA}/smollm2-r8.gguf"}, "may use only"),
                                ({"lora_name": "y"}, "lora_path")]:
            status, body = http("POST", url + "/v1/load_lora_adapter", request)
            self.assertEqual(status, 400, body)
            self.assertIn(needle, body["error"]["message"])
        # Unload while a long request uses it: the request finishes whole, the unload answers after it.
        # (The proof that it answered after: the request is counted as finished by the time it has; the
        # engine counts a request before it lets go of its adapter.)
        stream = self.client.completions.create(model="late", prompt=PROMPTS[1], max_tokens=150, temperature=0, stream=True)
        first = next(iter(stream))
        unloaded = {}

        def finished_late_requests():
            with urllib.request.urlopen(url + "/metrics") as r:
                for line in r.read().decode().splitlines():
                    if line.startswith('tern:lora_requests_total{model_name="smollm2-135m",lora_name="late"}'):
                        return int(float(line.split()[-1]))
            return 0

        def unload():
            unloaded["result"] = http("POST", url + "/v1/unload_lora_adapter", {"lora_name": "late"})
            unloaded["finished then"] = finished_late_requests()

        t = threading.Thread(target=unload)
        t.start()
        time.sleep(0.3)
        # New requests for it are refused at once, while the running one goes on.
        with self.assertRaises(openai.NotFoundError):
            complete(self.client, "late", PROMPTS[0])
        chunks = [first] + list(stream)
        t.join()
        self.assertEqual(unloaded["result"][0], 200, unloaded["result"][1])
        self.assertEqual(chunks[-1].choices[0].finish_reason, "length")
        self.assertEqual(unloaded["finished then"], 2, "the unload answered before the adapter's running request finished")
        self.assertNotIn("late", [m.id for m in self.client.models.list().data])
        status, body = http("POST", url + "/v1/unload_lora_adapter", {"lora_name": "late"})
        self.assertEqual(status, 404, body)
        # Loaded again under the same name: the same text as before.
        self.assertEqual(http("POST", url + "/v1/load_lora_adapter", {"lora_name": "late", "lora_path": f"{LORA}/smollm2-r64.gguf"})[0], 200)
        self.assertEqual(complete(self.client, "late", PROMPTS[0]), text)
        # Each load, refusal and unload is in the server's log.
        log = "".join(self.server.log)
        self.assertEqual(log.count(f"loaded LoRA adapter 'late' from {LORA}/smollm2-r64.gguf"), 2, log)
        self.assertIn("LoRA adapter 'x' from /nonexistent.gguf not loaded", log)
        self.assertIn("unloaded LoRA adapter 'late'", log)

    def test_metrics_show_running_adapters(self):
        stream = self.client.completions.create(model="small", prompt=PROMPTS[2], max_tokens=120, temperature=0, stream=True)
        next(iter(stream))
        with urllib.request.urlopen(self.server.url + "/metrics") as r:
            metrics = r.read().decode()
        list(stream)
        info = [line for line in metrics.splitlines() if line.startswith("tern:lora_requests_info")]
        self.assertEqual(len(info), 1, metrics)
        self.assertIn('running_lora_adapters="small"', info[0])
        self.assertIn('max_lora="64"', info[0])
        self.assertIn('tern:lora_requests_total{model_name="smollm2-135m",lora_name="a"}', metrics)


class LoraLimits(unittest.TestCase):
    def test_lru_limit_reloads_adapters_on_demand(self):
        server = TernServe(TERN, ["-m", BASE, "--max-loras", "1", "--lora", f"a={LORA}/smollm2-r16.gguf", "--lora", f"b={LORA}/smollm2-r8.gguf"])
        try:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
            first = {m: complete(client, m, PROMPTS[0]) for m in ("a", "b")}
            for _ in range(3):
                for m in ("a", "b"):
                    self.assertEqual(complete(client, m, PROMPTS[0]), first[m])
        finally:
            server.stop()

    def test_rank_limit_is_refused_at_start(self):
        with tempfile.TemporaryDirectory() as state:
            p = subprocess.run([TERN, "serve", "--port", "0", "-m", BASE, "--keys-db", os.path.join(state, "keys.db"), "--ledger", "off",
                                "--max-lora-rank", "32", "--lora", f"big={LORA}/smollm2-r64.gguf"], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("rank 64 is above the server's --max-lora-rank 32", p.stderr)

    def test_endpoints_are_admin_only_once_keys_exist(self):
        with tempfile.TemporaryDirectory() as state:
            keys_db = os.path.join(state, "keys.db")

            def create(*flags):
                out = subprocess.run([TERN, "keys", "--keys-db", keys_db, "create", *flags], capture_output=True, text=True, check=True)
                return [w for w in out.stdout.split() if w.startswith("tern-sk-")][0]

            user = create("--name", "user")
            admin = create("--name", "ops", "--admin")
            server = TernServe(TERN, ["-m", BASE, "--keys-db", keys_db])
            try:
                body = {"lora_name": "a", "lora_path": f"{LORA}/smollm2-r16.gguf"}
                self.assertEqual(http("POST", server.url + "/v1/load_lora_adapter", body)[0], 401)
                status, reply = http("POST", server.url + "/v1/load_lora_adapter", body, key=user)
                self.assertEqual(status, 403, reply)
                self.assertEqual(http("POST", server.url + "/v1/load_lora_adapter", body, key=admin)[0], 200)
                client = openai.OpenAI(base_url=server.url + "/v1", api_key=user, max_retries=0)
                self.assertTrue(complete(client, "a", PROMPTS[0]))
                self.assertEqual(http("POST", server.url + "/v1/unload_lora_adapter", {"lora_name": "a"}, key=user)[0], 403)
                self.assertEqual(http("POST", server.url + "/v1/unload_lora_adapter", {"lora_name": "a"}, key=admin)[0], 200)
            finally:
                server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", required=True)
    args, rest = parser.parse_known_args()
    TERN = args.tern
    exit_unless_default_model()
    if not os.path.exists(os.path.join(LORA, "smollm2-r16-peft")):
        print("SKIP: the LoRA fixtures are missing (scripts/test.sh makes them)")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], *rest])
