"""``openfrt deployments recover``: end the deployments whose process was lost.

A deployment whose lease has lapsed (its ``openfrt serve`` or ``openfrt live`` was killed, its
machine lost power) is ended as interrupted: counts as last flushed, the time since its last
heartbeat recorded as a gap, snapshot destruction and end audited, camera credentials destroyed,
the record published with ``interrupted`` set. A server restarted on its data directory does
this by itself, and resumes what it ran; run this when it will not come back. Deployments whose
process is alive (renewing its lease) are left alone.
"""

from __future__ import annotations

from openfrt.cli.common import HomeOption, JsonOption, OperatorOption, console, print_json, store_or_fail


def recover(home: HomeOption = None, operator: OperatorOption = None, json_output: JsonOption = False) -> None:
    """End, as interrupted, every running deployment whose process stopped renewing its lease."""
    from openfrt.live.deployments import DeploymentService
    from openfrt.live.recovery import Recovery
    from openfrt.records import current_actor

    with store_or_fail(home, json_output) as store:
        report = Recovery(DeploymentService(store), actor=current_actor(operator)).run()
    if json_output:
        print_json(report.as_dict())
        return
    for name, reason in report.interrupted:
        console.print(f"deployment [bold]{name}[/bold] ended — {reason}")
    if not report.interrupted:
        console.print("no deployment has lost its process: nothing to recover")
