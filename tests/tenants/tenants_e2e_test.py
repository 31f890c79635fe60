#!/usr/bin/env python3
"""End-to-end tests of tenants on a real `tern serve` (SmolLM2) through the official openai and
anthropic SDKs and raw HTTP: keys (CLI and admin API), errors in each endpoint's schema, model
allow-lists, rate limits under parallel clients, budgets across a restart, the ledger (SQLite and a
real PostgreSQL server) and spend queries, per-org prefix-cache isolation, and a kill test: SIGKILL
under load at random moments, then every response a client received in full has its ledger row.

    python tests/tenants/tenants_e2e_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when the model or the SDKs are missing.
"""
import argparse
import concurrent.futures
import json
import os
import pwd
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "api"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "metering"))

try:
    import anthropic
    import openai
except ImportError:
    print("SKIP: the openai and anthropic packages are not installed (scripts/test.sh installs them in .venv-tests)")
    sys.exit(77)

import postgres_server
from tern_process import TernServe, exit_unless_default_model

TERN = None
MODEL = "smollm2-135m"
# A price high enough that a few requests reach a small budget: USD per 1M tokens.
CONFIG = f"""
models:
  - name: {MODEL}
    model: {MODEL}
    kv_cache_memory: 256M
    context: 4096
    prices: {{input: 100.0, cached_input: 10.0, output: 200.0}}
  - name: other
    model: {MODEL}
    kv_cache_memory: 64M
    context: 2048
    preload: false
"""
PROMPT = [{"role": "user", "content": "Name three colours."}]


class State:
    """A key store and ledger that outlive one server process (restarts)."""

    def __init__(self, test=None):
        self.dir = tempfile.TemporaryDirectory(prefix="tern-tenants-")
        if test is not None:
            test.addCleanup(self.dir.cleanup)
        self.keys_db = os.path.join(self.dir.name, "keys.db")
        self.ledger = os.path.join(self.dir.name, "ledger.db")
        self.config = os.path.join(self.dir.name, "tern.yaml")
        with open(self.config, "w") as f:
            f.write(CONFIG)

    def keys(self, *args):
        p = subprocess.run([TERN, "keys", "--keys-db", self.keys_db, *args], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"tern keys {args} failed: {p.stderr}")
        return p.stdout.strip()

    def create_key(self, name, *flags):
        return self.keys("create", "--name", name, *flags)

    def serve(self, *extra, ledger=None):
        return TernServe(TERN, ["--config", self.config, "--keys-db", self.keys_db, "--ledger", ledger or self.ledger, *extra])

    def rows(self):
        with sqlite3.connect(self.ledger) as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM requests ORDER BY id")]


def http(method, url, body=None, key=None, headers=None):
    """(status, headers, parsed JSON body) without raising on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def chat(url, key, max_tokens=4, content="Name three colours.", model=MODEL, **extra):
    return http("POST", url + "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0, **extra},
                key=key)


class OpenServerTest(unittest.TestCase):
    def test_without_keys_only_loopback_unless_told(self):
        state = State(self)
        p = subprocess.run([TERN, "serve", "--config", state.config, "--keys-db", state.keys_db, "--ledger", state.ledger,
                            "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("no API keys exist", p.stderr)
        self.assertIn("--insecure-no-auth", p.stderr)
        server = state.serve("--host", "0.0.0.0", "--insecure-no-auth")
        try:
            status, _, body = chat(server.url, key=None)
            self.assertEqual(status, 200, body)
            # An open server still keeps a ledger (without a key id).
            time.sleep(0.2)
            self.assertEqual(state.rows()[-1]["key_id"], "")
        finally:
            server.stop()


class TenantsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = State()
        cls.admin = cls.state.create_key("ops", "--admin")
        cls.alice = cls.state.create_key("alice", "--org", "acme")
        cls.narrow = cls.state.create_key("narrow", "--models", "other")
        cls.server = cls.state.serve()
        cls.url = cls.server.url

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.state.dir.cleanup()

    def client(self, key):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def test_missing_or_wrong_keys_get_401_in_each_schema(self):
        with self.assertRaises(openai.AuthenticationError) as e:
            self.client("tern-sk-kdeadbeef0000-" + "0" * 64).chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=2)
        self.assertEqual(e.exception.body["code"], "invalid_api_key")
        with self.assertRaises(anthropic.AuthenticationError) as e:
            anthropic.Anthropic(base_url=self.url, api_key="not-a-key", max_retries=0).messages.create(
                model=MODEL, max_tokens=2, messages=PROMPT)
        self.assertEqual(e.exception.body["type"], "error")
        self.assertEqual(e.exception.body["error"]["type"], "authentication_error")
        status, _, body = http("GET", self.url + "/v1/models")
        self.assertEqual(status, 401)
        self.assertEqual(body["error"]["code"], "missing_api_key")
        # /health and /metrics stay open for probes and scrapers.
        self.assertEqual(http("GET", self.url + "/health")[0], 200)

    def test_valid_keys_work_with_both_sdks_and_both_headers(self):
        r = self.client(self.alice).chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=3, temperature=0)
        self.assertEqual(r.usage.completion_tokens, 3)
        m = anthropic.Anthropic(base_url=self.url, api_key=self.alice, max_retries=0).messages.create(  # sends x-api-key
            model=MODEL, max_tokens=3, messages=PROMPT, extra_body={"temperature": 0})
        self.assertEqual(m.usage.output_tokens, 3)

    def test_model_allow_list(self):
        with self.assertRaises(openai.PermissionDeniedError) as e:
            self.client(self.narrow).chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=2)
        self.assertIn("may not use model 'smollm2-135m'", e.exception.message)
        models = [m.id for m in self.client(self.narrow).models.list()]
        self.assertEqual(models, ["other"])
        self.assertIn(MODEL, [m.id for m in self.client(self.alice).models.list()])
        with self.assertRaises(openai.NotFoundError):
            self.client(self.alice).chat.completions.create(model="no-such-model", messages=PROMPT, max_tokens=2)
        # The 403 is counted with the other refusals.
        narrow_id = self.narrow.split("-")[2]
        self.assertRegex(http_text(self.url + "/metrics"), rf'tern:key_refusals_total{{key="{narrow_id}",reason="model_not_allowed"}} [1-9]')

    def test_a_key_created_while_the_server_runs_works_at_once(self):
        # `tern keys create`, then the first request at once: no 401 while the key watcher catches up.
        for i in range(3):
            secret = self.state.create_key(f"fresh-{i}")
            status, _, body = chat(self.url, secret, max_tokens=1)
            self.assertEqual(status, 200, body)
        # The audit log names the account that ran the command (not a uid).
        self.assertIn(f"cli:{pwd.getpwuid(os.getuid()).pw_name}", self.state.keys("audit", "--limit", "1"))

    def test_requests_per_minute_hold_under_parallel_clients(self):
        key = self.state.create_key("burst", "--rpm", "5")
        time.sleep(1.5)  # the server picks new keys up within a second
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: chat(self.url, key, max_tokens=1), range(24)))
        statuses = [r[0] for r in results]
        self.assertEqual(statuses.count(200), 5, statuses)
        self.assertEqual(statuses.count(429), 19, statuses)
        refused = next(r for r in results if r[0] == 429)
        self.assertEqual(refused[2]["error"]["code"], "rate_limit_requests")
        self.assertGreaterEqual(int(refused[1]["Retry-After"]), 1)
        self.assertEqual(refused[1]["x-ratelimit-limit-requests"], "5")
        self.assertEqual(refused[1]["x-ratelimit-remaining-requests"], "0")
        ok = next(r for r in results if r[0] == 200)
        self.assertEqual(ok[1]["x-ratelimit-limit-requests"], "5")

    def test_concurrency_cap_holds_under_parallel_streams(self):
        key = self.state.create_key("two-at-once", "--max-parallel", "2")
        time.sleep(1.5)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: chat(self.url, key, max_tokens=48), range(8)))
        statuses = [r[0] for r in results]
        self.assertGreaterEqual(statuses.count(200), 2, statuses)
        self.assertLessEqual(statuses.count(200), 4, statuses)  # two at a time; a later wave may fit after one ends
        self.assertTrue(all(r[2]["error"]["code"] == "concurrency_limit_exceeded" for r in results if r[0] == 429))
        self.assertGreater(statuses.count(429), 0)

    def test_tokens_per_minute(self):
        key = self.state.create_key("tokens", "--tpm", "200")
        time.sleep(1.5)
        status, headers, _ = chat(self.url, key, max_tokens=100)  # reserves ~110 of 200
        self.assertEqual(status, 200)
        self.assertEqual(headers["x-ratelimit-limit-tokens"], "200")
        status, headers, body = chat(self.url, key, max_tokens=150)
        self.assertEqual(status, 429, body)
        self.assertEqual(body["error"]["code"], "rate_limit_tokens")

    def test_ledger_rows_usage_endpoints_and_cli(self):
        key = self.state.create_key("ledgered", "--org", "ledger-org")
        time.sleep(1.5)
        ids = []
        for _ in range(3):
            status, _, body = chat(self.url, key, max_tokens=2)
            self.assertEqual(status, 200)
            ids.append(body["id"])
        key_id = key.split("-")[2]
        rows = [r for r in self.state.rows() if r["key_id"] == key_id]
        self.assertEqual([r["request_id"] for r in rows], ids)  # committed before the responses went out
        for r in rows:
            self.assertEqual((r["org"], r["model"], r["deployment"], r["status"], r["finish_reason"]), ("ledger-org", MODEL, MODEL, 200, "length"))
            self.assertEqual(r["completion_tokens"], 2)
            self.assertGreater(r["prompt_tokens"], 0)
            self.assertGreater(r["cost_usd"], 0)
            self.assertGreater(r["ttft_ms"], 0)
            self.assertGreaterEqual(r["e2e_ms"], r["ttft_ms"])
        status, _, own = http("GET", self.url + "/v1/usage", key=key)
        self.assertEqual(status, 200)
        self.assertEqual(own["total"]["requests"], 3)
        self.assertAlmostEqual(own["total"]["cost_usd"], sum(r["cost_usd"] for r in rows), places=9)
        status, _, body = http("GET", self.url + "/admin/usage?group_by=key", key=key)
        self.assertEqual(status, 403)
        status, _, by_key = http("GET", self.url + "/admin/usage?group_by=key", key=self.admin)
        self.assertEqual(status, 200)
        self.assertEqual(next(g for g in by_key["data"] if g["group"] == key_id)["requests"], 3)
        status, _, by_day = http("GET", self.url + f"/admin/usage?group_by=day&key={key_id}&from=2020-01-01", key=self.admin)
        self.assertEqual(by_day["data"][0]["group"], time.strftime("%Y-%m-%d", time.gmtime()))
        status, _, bad = http("GET", self.url + "/admin/usage?group_by=user", key=self.admin)
        self.assertEqual(status, 400)
        self.assertIn("group_by", bad["error"]["message"])
        cli = subprocess.run([TERN, "usage", "--ledger", self.state.ledger, "--group-by", "org", "--json"], capture_output=True, text=True)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        self.assertEqual(next(g for g in json.loads(cli.stdout)["data"] if g["group"] == "ledger-org")["requests"], 3)
        table = subprocess.run([TERN, "usage", "--ledger", self.state.ledger, "--group-by", "key"], capture_output=True, text=True)
        self.assertIn(key_id, table.stdout)
        self.assertIn("TOTAL", table.stdout)
        metrics = http_text(self.url + "/metrics")
        self.assertIn(f'tern:key_requests_total{{key="{key_id}",model="{MODEL}"}} 3', metrics)
        self.assertIn("tern:ledger_rows_written_total", metrics)

    def test_admin_api_creates_updates_and_revokes_keys(self):
        status, _, created = http("POST", self.url + "/admin/keys", {"name": "via-api", "org": "acme", "rpm": 100}, key=self.admin)
        self.assertEqual(status, 201, created)
        secret = created["key"]
        self.assertTrue(secret.startswith("tern-sk-"))
        self.assertEqual(chat(self.url, secret, max_tokens=1)[0], 200)  # usable at once
        status, _, body = http("POST", self.url + "/admin/keys", {"name": "x", "rpm": "many"}, key=self.admin)
        self.assertEqual((status, body["error"]["message"]), (400, "rpm: must be an integer"))
        status, _, body = http("POST", self.url + "/admin/keys", {"name": "x"}, key=self.alice)
        self.assertEqual(status, 403)
        status, _, updated = http("POST", self.url + "/admin/keys/update", {"key": "via-api", "rpm": 7}, key=self.admin)
        self.assertEqual((status, updated["rpm"]), (200, 7))
        status, _, revoked = http("POST", self.url + "/admin/keys/revoke", {"key": created["id"]}, key=self.admin)
        self.assertEqual(status, 200)
        self.assertIsNotNone(revoked["revoked_ms"])
        status, _, body = chat(self.url, secret, max_tokens=1)
        self.assertEqual((status, body["error"]["code"]), (401, "revoked_api_key"))
        status, _, keys = http("GET", self.url + "/admin/keys", key=self.admin)
        self.assertNotIn("hash", json.dumps(keys))
        status, _, audit = http("GET", self.url + "/admin/audit?limit=3", key=self.admin)
        admin_id = self.admin.split("-")[2]
        self.assertEqual([(e["action"], e["actor"]) for e in audit["data"]], [("revoke", admin_id), ("update", admin_id), ("create", admin_id)])
        self.assertEqual(audit["data"][1]["detail"], {"rpm": 7})
        # And from the command line, into the same store.
        self.assertIn("revoke", self.state.keys("audit", "--limit", "1"))

    def test_prefix_cache_is_shared_within_an_org_only(self):
        # A long prompt, different from every other test's, so nothing is cached before.
        prompt = "Tenant isolation check. " + " ".join(f"word{i}" for i in range(300))

        def cached(key, **extra):
            status, _, body = chat(self.url, key, max_tokens=1, content=prompt, **extra)
            self.assertEqual(status, 200, body)
            return body["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0)

        # Fresh orgs: nothing of theirs is cached yet, not even the chat template's system prompt.
        a1 = self.state.create_key("iso-a1", "--org", "iso-acme")
        a2 = self.state.create_key("iso-a2", "--org", "iso-acme")
        b = self.state.create_key("iso-b", "--org", "iso-beta")
        time.sleep(1.5)
        self.assertEqual(cached(a1), 0)  # org iso-acme computes it
        self.assertEqual(cached(b), 0)  # org iso-beta gets nothing of it
        self.assertGreater(cached(a2), 200)  # another key of iso-acme shares it
        self.assertEqual(cached(a2, cache_salt="team-x"), 0)  # a salt narrows, never widens
        self.assertGreater(cached(a1, cache_salt="team-x"), 200)


def http_text(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


class BudgetTest(unittest.TestCase):
    def test_budget_refuses_and_survives_a_restart(self):
        state = State(self)
        # ~30 prompt + 8 completion tokens at 100/200 USD per 1M: ~0.0046 USD a request.
        key = state.create_key("thrifty", "--budget", "0.012", "--budget-period", "day")
        server = state.serve()
        try:
            statuses = [chat(server.url, key, max_tokens=8)[0] for _ in range(6)]
            self.assertIn(402, statuses)
            self.assertEqual(statuses[:statuses.index(402)], [200] * statuses.index(402))
            status, _, body = chat(server.url, key, max_tokens=8)
            self.assertEqual(status, 402)
            self.assertIn("daily budget", body["error"]["message"])
            self.assertEqual(body["error"]["code"], "budget_exceeded")
            spent = sum(r["cost_usd"] for r in state.rows() if r["status"] == 200)
            self.assertLessEqual(spent, 0.012)
        finally:
            server.stop()
        server = state.serve()
        try:
            status, _, body = chat(server.url, key, max_tokens=8)
            self.assertEqual(status, 402, "the spend before the restart must still count")
            self.assertIn(f"has used ${spent:.4f}", body["error"]["message"])
        finally:
            server.stop()


@unittest.skipUnless(postgres_server.available(), "PostgreSQL is not installed")
class PostgresLedgerTest(unittest.TestCase):
    def test_rows_and_usage_in_postgresql(self):
        state = State(self)
        key = state.create_key("pg-user", "--org", "pg-org")
        admin = state.create_key("pg-admin", "--admin")
        with postgres_server.PostgresServer() as pg:
            server = state.serve(ledger=pg.url)
            try:
                self.assertTrue(any("ledger: postgresql:///postgres" in line for line in server.log), server.log)
                ids = [chat(server.url, key, max_tokens=2)[2]["id"] for _ in range(4)]
                present = pg.psql("SELECT request_id FROM requests ORDER BY id").split()
                self.assertEqual(present, ids)
                status, _, usage = http("GET", server.url + "/admin/usage?group_by=org", key=admin)
                self.assertEqual(status, 200)
                self.assertEqual(usage["data"][0], {**usage["data"][0], "group": "pg-org", "requests": 4, "completion_tokens": 8})
            finally:
                server.stop()


class KillTest(unittest.TestCase):
    """SIGKILL under load at random moments: every response a client received in full has its row."""

    ROUNDS = int(os.environ.get("TERN_KILL_ROUNDS", "4"))  # bench: TERN_KILL_ROUNDS=20

    def test_no_row_missing_after_sigkill(self):
        state = State(self)
        key = state.create_key("loadgen")
        rng = random.Random(int(os.environ.get("TERN_KILL_SEED", "0")) or None)
        completed = []  # request ids of responses received in full
        lock = threading.Lock()
        attempted = 0
        for _ in range(self.ROUNDS):
            server = state.serve()
            stop = threading.Event()

            def client(stream):
                nonlocal attempted
                while not stop.is_set():
                    with lock:
                        attempted += 1
                    try:
                        if stream:
                            c = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=30)
                            request_id, finished = None, False
                            for chunk in c.chat.completions.create(model=MODEL, messages=PROMPT, max_tokens=6, stream=True):
                                request_id = chunk.id
                                finished = finished or any(ch.finish_reason for ch in chunk.choices)
                            # The SDK returns only after [DONE]: the whole response arrived.
                            if finished:
                                with lock:
                                    completed.append(request_id)
                        else:
                            status, _, body = chat(server.url, key, max_tokens=6)
                            if status == 200:
                                with lock:
                                    completed.append(body["id"])
                    except Exception:
                        pass  # killed mid-request: the client got nothing complete

            threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(6)]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.5, 3.0))
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait()
            stop.set()
            for t in threads:
                t.join()
            server.stop()
        present = {r["request_id"] for r in state.rows()}
        missing = [i for i in completed if i not in present]
        print(f"\nkill test: {self.ROUNDS} SIGKILLs, {attempted} requests attempted, {len(completed)} received in full, "
              f"{len(present)} rows, {len(missing)} missing", file=sys.stderr)
        self.assertGreater(len(completed), 20)
        self.assertEqual(missing, [])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", required=True)
    args, rest = parser.parse_known_args()
    TERN = os.path.abspath(args.tern)
    exit_unless_default_model()
    unittest.main(argv=[sys.argv[0]] + rest)
