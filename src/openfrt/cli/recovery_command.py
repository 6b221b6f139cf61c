"""``openfrt deployments recover``: end the deployments whose process was lost.

A deployment whose lease has lapsed (its ``openfrt serve`` or ``openfrt live`` was killed, its
machine lost power) is ended as interrupted: counts as last flushed, the time since its last
heartbeat recorded as a gap, snapshot destruction and end audited, camera credentials destroyed,
the record published with ``interrupted`` set. A server restarted on its data directory does
this by itself, and resumes what it ran; run this when it will not come back. Deployments whose
process is alive (renewing its lease) are left alone. It ends deployments, so it acts as a user
who may run them (``OPENFRT_TOKEN``, permission ``run_deployments``), as stopping one does.
"""

from __future__ import annotations

from openfrt.cli.common import HomeOption, JsonOption, console, print_json, store_or_fail
from openfrt.cli.identity import signed_in


def recover(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """End, as interrupted, every running deployment whose process stopped renewing its lease."""
    from openfrt.live.deployments import DeploymentService
    from openfrt.live.recovery import Recovery

    with store_or_fail(home, json_output) as store:
        actor = signed_in(store, "run_deployments")
        report = Recovery(DeploymentService(store), actor=actor).run()
    if json_output:
        print_json(report.as_dict())
        return
    for name, reason in report.interrupted:
        console.print(f"deployment [bold]{name}[/bold] ended — {reason}")
    if not report.interrupted:
        console.print("no deployment has lost its process: nothing to recover")
