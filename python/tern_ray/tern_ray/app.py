"""The Ray Serve application: TernReplica (one `tern serve` process per Ray Serve replica) and
TernIngress (the HTTP entry: forwards any OpenAI or Anthropic request, streaming included, to a
replica, and retries on another one a request that failed before its answer started).

    client ──HTTP──► Ray Serve proxy ──► TernIngress ──handle (stream)──► TernReplica ──HTTP──► tern serve
                                                      (Ray picks the replica)          (loopback, its own port)

- Resources: a replica asks Ray for `threads` CPUs (its tern runs that many compute threads).
- Readiness: a replica's constructor returns once its tern answers GET /ready with 200 (the model is
  loaded), so Ray routes to it only then. Health: Ray calls check_health() every few seconds; a tern
  that exited or stopped answering GET /health fails it and Ray replaces the replica.
- Drain: on scale-down Ray stops routing to the replica, waits for its requests in flight, and its
  shutdown sends tern SIGTERM, which lets anything left finish (tern's --drain-timeout) before exit.
- Retries: a request whose replica failed before the first byte of the answer reached the ingress
  (tern killed, a connection refused, 503 while draining) is sent again, to whichever replica Ray
  picks; once the answer has started it is never retried (the client would see two answers).
- Autoscaling: each replica reports tern's own queue (requests running + waiting, from its /metrics)
  as a custom metric; QueueLengthPolicy keeps their total per replica near a target.
"""
import asyncio
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

# Headers that describe one hop, not the message (RFC 9110 7.6.1), and ones the proxy recomputes.
_HOP_HEADERS = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host",
                "content-length"}
_QUEUE_METRICS = re.compile(r"^tern:num_requests_(running|waiting)(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


logger = logging.getLogger("ray.serve")


class ReplicaUnavailable(RuntimeError):
    """The replica could not start answering: the request may go to another one."""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except OSError:
        return None, ""


def queue_requests(metrics_text):
    """Requests running + waiting in tern's engines, from its /metrics text."""
    return sum(float(value) for _, value in _QUEUE_METRICS.findall(metrics_text))


@serve.deployment(health_check_period_s=2, health_check_timeout_s=10, graceful_shutdown_wait_loop_s=1)
class TernReplica:
    def __init__(self, tern="tern", args=(), threads=1, drain_timeout_s=30.0, ready_timeout_s=300.0):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.drain_timeout_s = drain_timeout_s
        command = [tern, "serve", *args, "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads),
                   "--drain-timeout", str(drain_timeout_s)]
        # tern's own log goes to the replica's stderr (Ray's worker log).
        self.proc = subprocess.Popen(command, stdout=sys.stderr, stderr=sys.stderr)
        deadline = time.time() + ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tern serve exited with status {self.proc.returncode} before it was ready: {' '.join(command)}")
            if _get(self.url + "/ready", timeout=2)[0] == 200:
                break
            if time.time() > deadline:
                self.proc.kill()
                raise RuntimeError(f"tern serve was not ready after {ready_timeout_s:.0f} s")
            time.sleep(0.2)
        try:
            self.replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside Ray Serve (tests of the class itself)
            self.replica_id = f"pid-{os.getpid()}"
        self.session = None

    def endpoint(self):
        """Where this replica's tern listens (loopback of its node; benchmarks compare against it)."""
        return self.url

    async def check_health(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"tern serve exited with status {self.proc.returncode}")
        status, _ = await asyncio.to_thread(_get, self.url + "/health", 5.0)
        if status != 200:
            raise RuntimeError(f"tern serve's /health answered {status}")

    def record_autoscaling_stats(self):
        """Ray Serve's custom autoscaling metrics: tern's queue, for queue_length_policy."""
        status, text = _get(self.url + "/metrics", timeout=2)
        return {"tern_queue": queue_requests(text) if status == 200 else 0.0}

    async def forward(self, method, path, headers, body):
        """One request to this replica's tern: first yields {"status", "headers"}, then the body's
        bytes as they come. Raises ReplicaUnavailable before the first yield if tern cannot answer."""
        if self.session is None:
            self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        if self.proc.poll() is not None:
            self._die()
        try:
            response = await self.session.request(method, self.url + path, headers=headers, data=body)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            if self.proc.poll() is not None:
                self._die()
            raise ReplicaUnavailable(f"replica {self.replica_id}: {type(e).__name__}: {e}") from None
        body_read = None
        if response.status == 503:
            # tern refuses new requests while it drains ("shutting_down"): another replica can answer.
            body_read = await response.read()
            if b"shutting_down" in body_read or b"draining" in body_read:
                raise ReplicaUnavailable(f"replica {self.replica_id}: draining")
        out_headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS]
        out_headers.append(("x-tern-replica", self.replica_id))
        yield {"status": response.status, "headers": out_headers}
        if body_read is not None:
            yield body_read
            return
        try:
            async for chunk in response.content.iter_any():
                yield chunk
        finally:
            response.release()

    def _die(self):
        """tern is gone: this replica can answer nothing. Its actor exits (right after this request's
        error is sent) so that Ray stops routing to it at once and starts a new one, instead of the
        idle-looking dead replica drawing every request until the next health check."""
        asyncio.get_running_loop().call_later(0.1, os._exit, 1)
        raise ReplicaUnavailable(f"replica {self.replica_id}: tern serve exited with status {self.proc.returncode}")

    def __del__(self):
        # Ray Serve's shutdown of this replica (scale-down, redeploy): tern drains what is left.
        proc = getattr(self, "proc", None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(self.drain_timeout_s + 10)
        except subprocess.TimeoutExpired:
            proc.kill()


_ingress_app = FastAPI(title="tern on Ray Serve", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment
@serve.ingress(_ingress_app)
class TernIngress:
    def __init__(self, replicas, retries=4):
        self.replicas = replicas.options(stream=True)
        self.retries = retries

    @_ingress_app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE"])
    async def proxy(self, path: str, request: Request):
        body = await request.body()
        target = "/" + path + (("?" + request.url.query) if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        failures = []
        for attempt in range(self.retries + 1):
            stream = self.replicas.forward.remote(request.method, target, headers, body)
            try:
                head = await stream.__anext__()
            except Exception as e:  # the replica died or could not answer: nothing reached the client yet
                failures.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                await asyncio.sleep(0.25 * 2 ** attempt)  # 0.25 .. 2 s: past a health check, Ray has replaced a dead replica
                continue
            headers = dict(head["headers"])
            if failures:  # say so: the client's answer came from a second (or later) replica
                headers["x-tern-attempts"] = str(attempt + 1)
                logger.warning("%s %s answered on attempt %d after: %s", request.method, target, attempt + 1, "; ".join(failures))
            return StreamingResponse(self._rest(stream), status_code=head["status"], headers=headers)
        return JSONResponse(status_code=503, content={"error": {
            "message": f"no tern replica could answer after {self.retries + 1} attempts: {'; '.join(failures)}",
            "type": "server_error", "code": "replicas_unavailable"}})

    @staticmethod
    async def _rest(stream):
        async for chunk in stream:
            yield chunk


class QueueLengthPolicy:
    """A Ray Serve custom autoscaling policy: as many replicas as keep tern's queue (running + waiting,
    reported by each replica) near `target_queue` per replica, within the configured bounds. Ray
    instantiates it once with the policy's kwargs and calls it every autoscaling tick."""

    def __init__(self, target_queue=4.0):
        self.target_queue = float(target_queue)

    def __call__(self, ctx):
        metrics = ctx.aggregated_metrics() if callable(ctx.aggregated_metrics) else (ctx.aggregated_metrics or {})
        queue = sum((metrics.get("tern_queue") or {}).values())
        wanted = math.ceil(queue / self.target_queue) if queue > 0 else ctx.capacity_adjusted_min_replicas
        return max(ctx.capacity_adjusted_min_replicas, min(ctx.capacity_adjusted_max_replicas, wanted)), {}


def build_app(model="smollm2-135m", tern="tern", replicas=2, threads=1, extra_args=(), drain_timeout_s=30.0,
              autoscale=None, retries=4):
    """The application: `replicas` TernReplicas (or, with autoscale={"min_replicas", "max_replicas",
    "target_queue"}, as many as QueueLengthPolicy asks for; tern_ray must be importable where the
    Serve controller runs) behind a TernIngress."""
    options = {"ray_actor_options": {"num_cpus": threads}, "graceful_shutdown_timeout_s": drain_timeout_s + 10,
               "max_ongoing_requests": 256}
    if autoscale:
        from ray.serve.config import AutoscalingConfig, AutoscalingPolicy
        timing = {key: autoscale[key] for key in ("metrics_interval_s", "look_back_period_s", "upscale_delay_s", "downscale_delay_s")
                  if key in autoscale}  # else Ray's defaults
        options["autoscaling_config"] = AutoscalingConfig(
            min_replicas=autoscale.get("min_replicas", 1), max_replicas=autoscale.get("max_replicas", 4),
            initial_replicas=autoscale.get("initial_replicas", autoscale.get("min_replicas", 1)), **timing,
            policy=AutoscalingPolicy(policy_function="tern_ray.app:QueueLengthPolicy",
                                     policy_kwargs={"target_queue": float(autoscale.get("target_queue", 4))}))
    else:
        options["num_replicas"] = replicas
    replica = TernReplica.options(**options).bind(tern, ["--model", model, *extra_args], threads, drain_timeout_s)
    return TernIngress.options(ray_actor_options={"num_cpus": 0}).bind(replica, retries)
