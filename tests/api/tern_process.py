"""A `tern serve` process for the end-to-end tests: started on a free port, waited for until ready,
its stderr kept (for failure messages and log assertions), stopped with SIGTERM. Unless the test
names them, its key store and ledger live in a temporary directory: a developer's own keys
($TERN_HOME/keys.db) never close the test's server, and tests never write to their ledger."""
import argparse
import os
import re
import shutil
import socket
import tempfile
import signal
import subprocess
import sys
import threading
import time
import unittest


def run_with_tern():
    """The body of a test script's main: `--tern PATH` becomes the script's global TERN, the script
    skips (77) without the default model, and its unittest cases run with the other arguments."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--tern", required=True)
    args, rest = parser.parse_known_args()
    sys.modules["__main__"].TERN = os.path.abspath(args.tern)
    exit_unless_default_model()
    unittest.main(module="__main__", argv=[sys.argv[0], *rest])


def free_port():
    """A TCP port on loopback that nothing listens on right now (for a socket a test binds itself)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exit_unless_default_model():
    """Exit with 77 (ctest: skipped) when the default model has not been pulled yet."""
    home = os.environ.get("TERN_HOME", os.path.expanduser("~/.cache/tern"))
    if not os.path.exists(os.path.join(home, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")):
        print("SKIP: the default model is not downloaded (scripts/test.sh pulls it)")
        sys.exit(77)


class TernServe:
    def __init__(self, tern, args, env=None, timeout=60):
        args = list(args)
        self.state_dir = tempfile.mkdtemp(prefix="tern-serve-")
        if "--keys-db" not in args:
            args += ["--keys-db", os.path.join(self.state_dir, "keys.db")]
        if "--ledger" not in args:
            args += ["--ledger", os.path.join(self.state_dir, "ledger.db")]
        self.proc = subprocess.Popen([tern, "serve", "--port", "0", *args], stderr=subprocess.PIPE, text=True, env=env)
        self.log = []
        self.port = None
        self.scheme = "http"
        deadline = time.time() + timeout
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"listening on (https?)://[\d.]+:(\d+)", line)
            if m:
                self.scheme, self.port = m.group(1), int(m.group(2))
            if "tern serve: ready" in line or time.time() > deadline:
                break
        if self.port is None or self.proc.poll() is not None:
            raise RuntimeError("tern serve did not start:\n" + "".join(self.log))
        threading.Thread(target=self._drain, daemon=True).start()
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self):
        if os.environ.get("TERN_E2E_SHOW_LOG"):
            sys.stderr.write("".join(self.log))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.state_dir, ignore_errors=True)
