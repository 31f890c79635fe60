"""A throwaway PostgreSQL server for tests: a fresh cluster in a temporary directory (Debian's
postgresql package), listening only on a Unix socket there, removed on stop. As root the cluster runs
as the `postgres` system user (initdb refuses root)."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time


def _bin_dir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs and os.path.exists(os.path.join(dirs[-1], "initdb")) else None


def available():
    return _bin_dir() is not None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, fsync=False):
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.dir = tempfile.mkdtemp(prefix="tern-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        as_user = []
        self.user = os.environ.get("USER") or "root"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
            self.user = "postgres"
        self._as_user = as_user
        subprocess.run(as_user + [f"{bin_dir}/initdb", "-D", self.data, "-A", "trust", "-U", self.user, "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._pg_ctl = f"{bin_dir}/pg_ctl"
        # Tests skip fsync (speed); benchmarks keep it (TERN_PG_FSYNC=1), as a production server would.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses='' -c fsync={'on' if fsync else 'off'} -c max_connections=200"
        subprocess.run(as_user + [self._pg_ctl, "-D", self.data, "-o", options, "-l", os.path.join(self.dir, "log"), "-w", "start"],
                       check=True, stdout=subprocess.DEVNULL)
        self.url = f"postgresql:///postgres?host={self.dir}&port={self.port}&user={self.user}"

    def psql(self, sql):
        bin_dir = _bin_dir()
        out = subprocess.run([f"{bin_dir}/psql", "-X", "-A", "-t", "-h", self.dir, "-p", str(self.port), "-U", self.user, "-d", "postgres",
                              "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        subprocess.run(self._as_user + [self._pg_ctl, "-D", self.data, "-m", "immediate", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    # tests/metering: run a program with TERN_TEST_POSTGRES_URL pointing at a fresh server.
    import sys
    if not available():
        print("SKIP: PostgreSQL is not installed")
        sys.exit(77)
    with PostgresServer(fsync=os.environ.get("TERN_PG_FSYNC") == "1") as pg:
        env = dict(os.environ, TERN_TEST_POSTGRES_URL=pg.url)
        sys.exit(subprocess.run(sys.argv[1:], env=env).returncode)
