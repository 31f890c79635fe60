#!/usr/bin/env python3
"""End-to-end tests of region and compliance placement in `tern serve --config`: a labelled local model
(region eu-west) and a labelled remote deployment (region us-east, the fake upstream) behind one
route, keys of orgs with and without policies (tern.yaml `policies:`). A tenant's requests never leave
its policy - not first, not as a fallback - a refusal names the policy, and the request log, the
request's trace and the ledger say where each request ran.

    python tests/api/placement_e2e_test.py --tern build/tern --upstream build/tests/router/upstream_fixture_server [-v]

Exit code 77 (ctest: skipped) when the model or the SDK is missing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
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
UPSTREAM = None
MODEL = "smollm2-135m"


def read_log(path, request_id, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.strip() and json.loads(line).get("request_id") == request_id:
                        return json.loads(line)
        time.sleep(0.05)
    raise AssertionError(f"no log line for {request_id}")


def get(url, key):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Placement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="tern-placement-")
        cls.upstream = subprocess.Popen([UPSTREAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        port = int(cls.upstream.stdout.readline().split()[1])
        keys_db = os.path.join(cls.dir.name, "keys.db")

        def create_key(*args):
            p = subprocess.run([TERN, "keys", "--keys-db", keys_db, "create", *args], capture_output=True, text=True, timeout=60, check=True)
            return p.stdout.strip()

        cls.anyone = create_key("--name", "anyone", "--org", "globex")
        cls.eu = create_key("--name", "eu-app", "--org", "acme")
        cls.local_only = create_key("--name", "strict", "--org", "initech")
        cls.admin = create_key("--name", "ops", "--admin")
        cls.log = os.path.join(cls.dir.name, "requests.jsonl")
        config = os.path.join(cls.dir.name, "tern.yaml")
        with open(config, "w") as f:
            f.write(f"""
models:
  - name: {MODEL}
    model: {MODEL}
    context: 1024
    kv_cache_memory: 80M
    prices: {{input: 1.0, output: 1.0}}
    labels: {{region: eu-west, compliance: gdpr}}
deployments:
  - name: us-cloud
    kind: openai
    base_url: http://127.0.0.1:{port}/v1
    model: ok
    prices: {{input: 0.1, output: 0.1}}
    labels: {{region: us-east}}
routes:
  - name: chat
    deployments: [us-cloud, {MODEL}]
    policy: price
policies:
  orgs:
    acme: {{regions: [eu-west]}}
  keys:
    strict: {{never_remote: true, labels: {{compliance: gdpr}}}}
request_log: {cls.log}
""")
        cls.server = TernServe(TERN, ["--config", config, "--keys-db", keys_db])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.upstream.stdin.close()
        cls.upstream.wait(10)
        cls.dir.cleanup()

    def client(self, key):
        return openai.OpenAI(base_url=self.server.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def ask(self, key, request_id, model="chat"):
        r = self.client(key).chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "Hello"}], max_tokens=4, extra_headers={"x-request-id": request_id})
        return r.parse()

    def test_a_tenant_without_a_policy_goes_to_the_cheapest(self):
        answer = self.ask(self.anyone, "placement-any")
        self.assertEqual(answer.model_extra.get("provider"), "us-cloud")
        line = read_log(self.log, "placement-any")
        self.assertEqual((line["deployment"], line["region"]), ("us-cloud", "us-east"))

    def test_an_org_policy_keeps_requests_in_its_region_and_the_ledger_says_where(self):
        answer = self.ask(self.eu, "placement-eu")
        self.assertEqual(answer.model_extra.get("provider"), MODEL)
        line = read_log(self.log, "placement-eu")
        self.assertEqual((line["deployment"], line["region"]), (MODEL, "eu-west"))
        status, trace = get(f"{self.server.url}/admin/requests/placement-eu", self.admin)
        self.assertEqual(status, 200, trace)
        self.assertEqual(trace["region"], "eu-west")
        self.assertEqual([e["deployment"] for e in trace["timeline"] if e["name"] == "upstream_attempt"], [MODEL],
                         "the cheaper us-cloud was never tried")
        status, usage = get(f"{self.server.url}/v1/usage?group_by=deployment", self.eu)
        self.assertEqual(status, 200, usage)
        self.assertEqual({row["group"] for row in usage["data"]}, {MODEL}, usage)

    def test_outside_the_policy_is_refused_naming_it(self):
        with self.assertRaises(openai.PermissionDeniedError) as refused:
            self.ask(self.eu, "placement-refused", model="us-cloud")
        body = refused.exception.body
        self.assertEqual(body["code"], "placement_policy")
        self.assertIn("org acme's placement policy (regions eu-west)", body["message"])
        self.assertIn("'us-cloud' is in region us-east", body["message"])
        self.assertEqual(read_log(self.log, "placement-refused")["status"], 403)

    def test_a_key_policy_never_remote_with_a_required_label(self):
        answer = self.ask(self.local_only, "placement-strict")
        self.assertEqual(answer.model_extra.get("provider"), MODEL)
        with self.assertRaises(openai.PermissionDeniedError) as refused:
            self.ask(self.local_only, "placement-strict-2", model="us-cloud")
        self.assertIn("key strict's placement policy (labels compliance=gdpr; never remote)", refused.exception.body["message"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", required=True)
    parser.add_argument("--upstream", required=True)
    args, rest = parser.parse_known_args()
    TERN, UPSTREAM = os.path.abspath(args.tern), os.path.abspath(args.upstream)
    exit_unless_default_model()
    unittest.main(argv=[sys.argv[0], *rest])
