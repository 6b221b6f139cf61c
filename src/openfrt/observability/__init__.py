"""How openfrt reports on itself: Prometheus metrics, health checks and structured logs.

Nothing here names or describes a face: metric labels are deployments, cameras, routes and
destinations; log context is a request id, a deployment and a camera.
"""
