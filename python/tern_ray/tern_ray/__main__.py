"""python -m tern_ray --model smollm2-135m --replicas 2 --port 8000: a local Ray cluster (or the one
RAY_ADDRESS names) running tern replicas behind a Ray Serve ingress, until interrupted."""
import argparse
import shutil

import ray
from ray import serve

from tern_ray.app import build_app


def main():
    p = argparse.ArgumentParser(prog="tern-ray", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m", help="model alias or .gguf path, as tern serve -m")
    p.add_argument("--tern", default=shutil.which("tern") or "tern", help="the tern binary on every node")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="compute threads (and Ray CPUs) per replica")
    p.add_argument("--autoscale", metavar="MIN:MAX:QUEUE", help="autoscale between MIN and MAX replicas on tern's queue, QUEUE per replica")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("tern_args", nargs="*", help="after --: more tern serve flags, e.g. -- --context 4096")
    args = p.parse_args()
    autoscale = None
    if args.autoscale:
        low, high, queue = args.autoscale.split(":")
        autoscale = {"min_replicas": int(low), "max_replicas": int(high), "target_queue": float(queue)}
    ray.init()
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(model=args.model, tern=args.tern, replicas=args.replicas, threads=args.threads, extra_args=args.tern_args,
                        drain_timeout_s=args.drain_timeout, autoscale=autoscale), name="tern", route_prefix="/", blocking=True)


if __name__ == "__main__":
    main()
