"""``openfrt keys``: the encryption key of the records store.

``openfrt keys rotate`` re-encrypts every encrypted column and file under a new key while the
server keeps serving, then retires the old key (see :mod:`openfrt.records.keys`). It rewrites
the key file (``OPENFRT_KEY_FILE`` or ``<home>/secret.key``) in place, so that file must be
writable by whoever runs it. Interrupted, it is run again and carries on. It is local
administration (audited as ``local:<os user>``): whoever can rewrite the key file already holds
every secret it protects, so an openfrt user's token would prove nothing more.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from openfrt.cli.common import HomeOption, JsonOption, console, print_json, store_or_fail

keys_app = typer.Typer(help="The store's encryption key: rotation.", no_args_is_help=True)


@keys_app.command("rotate")
def rotate(
    settle: Annotated[
        Optional[float],
        typer.Option("--settle", min=0.0, help="Seconds to wait before the final pass (default: longer than any write waits)."),
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Re-encrypt every reference image, template, alert image, camera credential and the search
    index under a new key, then retire the old key (audited; resumable)."""
    from rich.progress import Progress

    from openfrt.records import local_actor
    from openfrt.records.keys import rotate_keys

    with store_or_fail(home, json_output) as store:
        with Progress(console=console, transient=True, disable=json_output) as bar:
            tasks: dict[str, int] = {}

            def progress(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(f"re-encrypting {label}", total=total)
                bar.update(tasks[label], completed=done, total=total)

            report = rotate_keys(store, actor=local_actor(), progress=progress, settle_seconds=settle)
    if json_output:
        print_json(report.as_dict())
        return
    rows = ", ".join(f"{count} {label}" for label, count in report.rows.items())
    console.print(f"encryption key rotated to {report.key_id} (retired {', '.join(report.retired)}): "
                  f"re-encrypted {rows}; {report.index_files} search index file(s) to be rebuilt on next use")
