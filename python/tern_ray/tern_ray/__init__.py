"""tern on Ray Serve: `tern serve` replicas as Ray Serve deployments behind a Ray Serve ingress.

    from tern_ray import build_app
    serve.run(build_app(model="smollm2-135m", replicas=2, threads=1))

or `python -m tern_ray --model smollm2-135m --replicas 2 --port 8000`. See docs/ray.md.
"""
from tern_ray.app import TernIngress, TernReplica, build_app, QueueLengthPolicy

__all__ = ["TernIngress", "TernReplica", "build_app", "QueueLengthPolicy"]
