#!/usr/bin/env python3
"""The web console (`GET /console`) in a real browser: Playwright (PyPI) driving Debian's Chromium
loads it from a `tern serve` that has keys while `tern bench` runs against it. Checked: the page is
refused without an admin key (and with a key that is not an admin's), works with one, shows no
console errors, its figures move under load and agree with /metrics and the request log once the load
ends, and a request's timeline on the page matches GET /admin/requests/{id} and its request-log line.

    python tests/api/console_browser_test.py --tern build/tern [-v] [--screenshots docs/images]

--screenshots DIR also saves the console under load and a `tern bench` HTML report, as PNGs (the
images in docs/observability.md). Exit code 77 (ctest: skipped) when the model, Playwright or
Chromium is missing.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

try:
    from playwright.sync_api import sync_playwright
except ImportError:
    print("SKIP: playwright is not installed (scripts/test.sh installs it in .venv-tests)")
    sys.exit(77)

from tern_process import TernServe, exit_unless_default_model

TERN = None
SCREENSHOTS = None
MODEL = "smollm2-135m"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def http_get(url, key=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(check, what, timeout=30):
    """Polls `check` (page reads through locators: the page's CSP forbids the eval that Playwright's
    wait_for_function needs, and the test must not weaken it) until it is true."""
    deadline = time.time() + timeout
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def number(text):
    try:
        return float(text.replace(",", "").replace("$", ""))
    except ValueError:
        return None


def metric_sum(metrics_text, name):
    total = 0.0
    for line in metrics_text.splitlines():
        if re.match(rf"^{re.escape(name)}(\{{| )", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Console(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="tern-console-")
        keys_db = os.path.join(cls.dir.name, "keys.db")

        def create_key(*args):
            p = subprocess.run([TERN, "keys", "--keys-db", keys_db, "create", *args], capture_output=True, text=True, timeout=60, check=True)
            return p.stdout.strip()

        cls.admin = create_key("--name", "ops", "--admin")
        cls.user = create_key("--name", "app", "--org", "acme")
        cls.log = os.path.join(cls.dir.name, "requests.jsonl")
        cls.server = TernServe(TERN, ["-m", MODEL, "--context", "1024", "--kv-cache-memory", "80M", "--keys-db", keys_db,
                                      "--request-log", cls.log])
        cls.playwright = sync_playwright().start()
        cls.browser = cls.playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.playwright.stop()
        cls.server.stop()
        cls.dir.cleanup()

    def new_page(self):
        page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page, errors

    def bench(self, seconds, html=None):
        args = [TERN, "bench", "--target", self.server.url + "/v1", "--model", MODEL, "-c", "4", "--duration", str(seconds),
                "-n", "400", "--output-tokens", "24", "--api-key-env", "TERN_CONSOLE_TEST_KEY"]
        if html:
            args += ["--html", html]
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "TERN_CONSOLE_TEST_KEY": self.user})

    def test_refused_without_an_admin_key(self):
        self.assertEqual(http_get(self.server.url + "/admin/console/data")[0], 401)
        self.assertEqual(http_get(self.server.url + "/admin/console/data", self.user)[0], 403)
        self.assertEqual(http_get(self.server.url + "/admin/requests", self.user)[0], 403)
        page, errors = self.new_page()
        page.goto(self.server.url + "/console")
        page.get_by_test_id("login").wait_for(state="visible")
        self.assertFalse(page.get_by_test_id("console").is_visible())
        page.get_by_test_id("key-input").fill(self.user)
        page.get_by_test_id("key-submit").click()
        wait_until(lambda: "not an admin key" in page.get_by_test_id("login-error").inner_text(), "the refusal on the page")
        self.assertFalse(page.get_by_test_id("console").is_visible())
        # The browser logs the refused fetches (401, 403) as errors; nothing else may appear.
        self.assertEqual([e for e in errors if "401" not in e and "403" not in e], [])
        page.close()

    def test_console_under_load_agrees_with_metrics_and_the_log(self):
        page, errors = self.new_page()
        page.goto(self.server.url + "/console")
        page.get_by_test_id("key-input").fill(self.admin)
        page.get_by_test_id("key-submit").click()
        page.get_by_test_id("console").wait_for(state="visible")

        html_report = os.path.join(self.dir.name, "bench.html")
        bench = self.bench(12, html_report)
        # Under load the figures move: generated tokens grow, throughput and queue tiles show traffic.
        generated = lambda: int(page.get_by_test_id("tile-generated").get_attribute("data-value") or 0)
        wait_until(lambda: generated() > 0, "generated tokens on the page")
        first = generated()
        wait_until(lambda: generated() > first, "generated tokens to grow")
        wait_until(lambda: (number(page.get_by_test_id("tile-tps").inner_text()) or 0) > 0, "throughput on the page")
        wait_until(lambda: page.get_by_test_id("tile-ttft").inner_text().strip() != "– / –", "TTFT percentiles on the page")
        wait_until(lambda: number(page.get_by_test_id("tile-queue").inner_text().split("/")[0]) not in (None, 0.0), "running requests")
        if SCREENSHOTS:
            time.sleep(4)  # a few more points on the charts
            page.screenshot(path=os.path.join(SCREENSHOTS, "console.png"), full_page=True)
        out, _ = bench.communicate(timeout=120)
        self.assertEqual(bench.returncode, 0, out)

        # Once the load is over, the page's totals equal /metrics' and the request log's.
        time.sleep(2.5)
        status, metrics = http_get(self.server.url + "/metrics")
        self.assertEqual(status, 200)
        generated_total = metric_sum(metrics, "tern:generation_tokens_total")
        wait_until(lambda: page.get_by_test_id("tile-generated").get_attribute("data-value") == str(int(generated_total)),
                   f"the page's generated tokens to equal /metrics' {int(generated_total)}", timeout=10)
        with open(self.log) as f:
            lines = [json.loads(line) for line in f if line.strip()]
        deadline = time.time() + 10
        while len(lines) < metric_sum(metrics, "tern:request_success_total") and time.time() < deadline:
            time.sleep(0.2)
            with open(self.log) as f:
                lines = [json.loads(line) for line in f if line.strip()]
        wait_until(lambda: page.get_by_test_id("tile-requests").get_attribute("data-value") == str(len(lines)),
                   f"the page's requests to equal the log's {len(lines)} lines", timeout=10)
        self.assertGreater(len(lines), 4)
        self.assertIn("acme", page.get_by_test_id("spend-orgs").inner_text())

        # A recent request's timeline on the page is the server's, and agrees with its log line.
        page.locator("[data-testid=recent] tbody tr[data-row='0']").click()
        page.get_by_test_id("timeline").locator(".tl-row").first.wait_for()
        request_id = page.get_by_test_id("trace-id").inner_text()
        status, body = http_get(f"{self.server.url}/admin/requests/{request_id}", self.admin)
        self.assertEqual(status, 200)
        trace = json.loads(body)
        shown = [row.get_attribute("data-event") for row in page.get_by_test_id("timeline").locator(".tl-row").all()]
        self.assertEqual(shown, [e["name"] for e in trace["timeline"]])
        line = next(l for l in lines if l["request_id"] == request_id)
        for field in ("prompt_tokens", "cached_tokens", "completion_tokens", "status", "finish_reason"):
            self.assertEqual(trace[field], line[field], field)
        self.assertAlmostEqual(trace["e2e_ms"], line["e2e_ms"], delta=0.01)
        summary = page.locator("#trace-summary").inner_text()
        self.assertIn(f"{line['prompt_tokens']} prompt", summary)
        self.assertIn(f"{line['completion_tokens']} output tokens", summary)
        self.assertEqual(errors, [], "no console errors")
        if SCREENSHOTS:
            page.get_by_test_id("trace").screenshot(path=os.path.join(SCREENSHOTS, "console-timeline.png"))
            report = self.browser.new_page(viewport={"width": 1300, "height": 1000})
            report.goto("file://" + html_report)
            report.screenshot(path=os.path.join(SCREENSHOTS, "bench-report.png"), full_page=True)
            report.close()
        page.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", required=True)
    parser.add_argument("--screenshots")
    args, rest = parser.parse_known_args()
    TERN = os.path.abspath(args.tern)
    SCREENSHOTS = os.path.abspath(args.screenshots) if args.screenshots else None
    exit_unless_default_model()
    if not os.path.exists(CHROMIUM):
        print("SKIP: Chromium is not installed (scripts/setup.sh installs Debian's chromium)")
        sys.exit(77)
    unittest.main(argv=[sys.argv[0], *rest])
