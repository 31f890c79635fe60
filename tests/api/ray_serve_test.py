#!/usr/bin/env python3
"""tern on Ray Serve (python/tern_ray), on a local Ray cluster this test starts: two `tern serve`
replicas behind the Ray Serve ingress.

- both replicas answer OpenAI and Anthropic requests through the ingress, streamed and not, with the
  same answers as tern gives directly (greedy);
- a replica's tern killed (SIGKILL) while requests arrive: every request that had not started
  streaming is answered by the other replica (retried by the ingress); Ray notices (health check)
  and brings the replica back with a new tern;
- scaled down to one replica while a stream is in flight: the stream finishes (drain), and the
  removed replica's tern exits on SIGTERM;
- autoscaled (1 to 2 replicas, 2 queued requests per replica), six concurrent clients fill tern's
  queue, which the replica reports, and the policy adds the second replica; its arithmetic alone too.

    python tests/api/ray_serve_test.py --tern build/tern [-v]

Exit code 77 (ctest: skipped) when ray[serve] or the model is missing.
"""
import os
import subprocess
import sys
import threading
import time
import unittest

try:
    import anthropic
    import openai
    import ray
    from ray import serve
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python", "tern_ray"))
from tern_ray import app as tern_app  # noqa: E402
from tern_process import free_port, run_with_tern  # noqa: E402

TERN = None
MODEL = "smollm2-135m"


def tern_pids():
    """Process ids of the `tern serve` processes the replicas started (their command line names our binary)."""
    out = subprocess.run(["pgrep", "-f", f"^{TERN} serve --model {MODEL}"], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())




class RayServe(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The Serve controller imports tern_ray (the autoscaling policy): the checkout's package on every worker's path.
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.path.join(ROOT, "python", "tern_ray"),
                                           "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5"}})
        cls.port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": cls.port})
        cls.deploy(2)
        cls.url = f"http://127.0.0.1:{cls.port}"
        cls.openai = openai.OpenAI(base_url=cls.url + "/v1", api_key="unused", max_retries=0, timeout=120)

    @classmethod
    def deploy(cls, replicas):
        serve.run(tern_app.build_app(model=MODEL, tern=TERN, replicas=replicas, threads=1, drain_timeout_s=20,
                                     extra_args=["--context", "1024", "--kv-cache-memory", "64M"]),
                  name="tern", route_prefix="/")

    @classmethod
    def tearDownClass(cls):
        serve.shutdown()
        ray.shutdown()

    def chat(self, text, max_tokens=8, attempts=None):
        raw = self.openai.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=max_tokens, temperature=0)
        if attempts is not None:
            attempts.append(int(raw.headers.get("x-tern-attempts", "1")))
        return raw.headers.get("x-tern-replica"), raw.parse()

    def test_1_both_replicas_answer_both_apis(self):
        seen = set()
        answers = set()
        for i in range(12):
            replica, completion = self.chat("Name a colour.")
            seen.add(replica)
            answers.add(completion.choices[0].message.content)
        self.assertEqual(len(seen), 2, f"both replicas answered: {seen}")
        self.assertEqual(len(answers), 1, "greedy: the same answer from either replica")
        stream = self.openai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Name a colour."}],
                                                     max_tokens=8, temperature=0, stream=True)
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in stream if c.choices), answers.pop())
        client = anthropic.Anthropic(base_url=self.url, api_key="unused", max_retries=0)
        message = client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Name a colour."}],
                                         extra_body={"temperature": 0})
        self.assertEqual(message.stop_reason, "max_tokens")
        with client.messages.stream(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Hi"}],
                                    extra_body={"temperature": 0}) as s:
            self.assertTrue("".join(s.text_stream))

    def test_2_a_killed_replica_loses_no_request_and_comes_back(self):
        before = tern_pids()
        self.assertEqual(len(before), 2, before)
        results, errors, attempts, sent = [], [], [], []
        killed = threading.Event()

        def client():
            # Requests keep coming until 4 more than were sent before the kill (a fast replica answers
            # a fixed batch before it could be killed): some are in flight on the dead replica or sent
            # to it before Ray notices.
            i, after_kill = 0, 0
            while after_kill < 4:
                after_kill += killed.is_set()
                sent.append(i)
                try:
                    results.append(self.chat(f"Request {i}: say yes.", max_tokens=4, attempts=attempts)[1].choices[0].finish_reason)
                except Exception as e:  # noqa: BLE001 - counted, asserted below
                    errors.append(repr(e))
                i += 1

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.kill(before[0], 9)
        killed.set()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [], "no request lost: those on the dead replica were retried")
        self.assertEqual(len(results), len(sent))
        self.assertGreater(max(attempts), 1, "some requests met the dead replica and were answered by the other")
        # Ray's health check notices and replaces the replica: two tern processes again, one new.
        deadline = time.time() + 90
        while time.time() < deadline:
            now = tern_pids()
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.5)
        now = tern_pids()
        self.assertEqual(len(now), 2, now)
        self.assertNotIn(before[0], now)
        deadline = time.time() + 60
        seen = set()
        while time.time() < deadline and len(seen) < 2:
            seen.add(self.chat("Name a colour.")[0])
        self.assertEqual(len(seen), 2, "the new replica serves")

    def test_3_scale_down_drains(self):
        before = tern_pids()
        self.assertEqual(len(before), 2)
        result = {}

        def stream():
            chunks = self.openai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count to thirty."}],
                                                         max_tokens=120, temperature=0, stream=True, extra_body={"ignore_eos": True})
            result["tokens"] = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)

        streams = [threading.Thread(target=stream) for _ in range(2)]  # likely one on each replica
        for t in streams:
            t.start()
        time.sleep(1.0)
        self.deploy(1)
        for t in streams:
            t.join(120)
        self.assertGreater(result.get("tokens", 0), 60, "the streams finished during the scale-down")
        deadline = time.time() + 60
        while time.time() < deadline and len(tern_pids()) != 1:
            time.sleep(0.5)
        self.assertEqual(len(tern_pids()), 1, "the removed replica's tern exited")
        self.deploy(2)

    def test_5_autoscales_on_terns_queue(self):
        # One replica at least, two at most, two queued requests per replica: six long streams at once
        # put six in tern's queue, which the replica reports, and the policy asks for a second replica.
        serve.run(tern_app.build_app(model=MODEL, tern=TERN, threads=1, drain_timeout_s=20,
                                     extra_args=["--context", "1024", "--kv-cache-memory", "64M"],
                                     autoscale={"min_replicas": 1, "max_replicas": 2, "target_queue": 2, "upscale_delay_s": 1,
                                                "look_back_period_s": 2}),
                  name="tern", route_prefix="/")
        deadline = time.time() + 60
        while time.time() < deadline and len(tern_pids()) != 1:
            time.sleep(0.5)
        self.assertEqual(len(tern_pids()), 1, "starts at min_replicas")
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    self.chat("Write a long story.", max_tokens=64)
                except Exception:  # noqa: BLE001 - load only
                    pass

        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            deadline = time.time() + 90
            while time.time() < deadline and len(tern_pids()) < 2:
                time.sleep(0.5)
            self.assertEqual(len(tern_pids()), 2, "scaled up on tern's queue")
        finally:
            stop.set()
            for t in threads:
                t.join(60)

    def test_4_queue_length_policy(self):
        class Ctx:
            capacity_adjusted_min_replicas = 1
            capacity_adjusted_max_replicas = 4

            def __init__(self, queues):
                self.aggregated_metrics = {"tern_queue": dict(enumerate(queues))}

        policy = tern_app.QueueLengthPolicy(target_queue=4)
        self.assertEqual(policy(Ctx([0, 0]))[0], 1)
        self.assertEqual(policy(Ctx([5, 6]))[0], 3)
        self.assertEqual(policy(Ctx([40, 40]))[0], 4)
        self.assertEqual(tern_app.queue_requests("tern:num_requests_running{model=\"m\"} 3\ntern:num_requests_waiting{model=\"m\"} 2\n"), 5)


if __name__ == "__main__":
    run_with_tern()
