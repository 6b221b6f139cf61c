"""``openfrt backup`` and ``openfrt restore``: the whole system in one encrypted file, and back.

A backup is taken from a running system (the server and deployments carry on) and is encrypted
with the store's key; ``--with-key`` also puts the key in it, wrapped under a passphrase, for
when the key file is lost with the machine. ``restore`` needs an empty data directory (and an
empty database for PostgreSQL). See :mod:`openfrt.records.backup` and the README. Both are local
administration (audited as ``local:<os user>``): they need the data directory and its key file,
which already open everything a backup holds, and a restore starts from a directory with no
users to sign in as.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from openfrt.cli.common import HomeOption, JsonOption, console, fail, print_json, store_or_fail

FileArgument = Annotated[Path, typer.Argument(metavar="FILE", help="The backup file.")]
PassphraseStdinOption = Annotated[
    bool, typer.Option("--passphrase-stdin", help="Read the key's passphrase from the first line of standard input.")
]


def backup(
    file: FileArgument,
    with_key: Annotated[bool, typer.Option("--with-key", help="Also keep the encryption key in the backup, under a passphrase.")] = False,
    passphrase_stdin: PassphraseStdinOption = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write a consistent, encrypted backup of the running system: database, search index, settings."""
    from openfrt.records import local_actor
    from openfrt.records.backup import create_backup

    passphrase = _passphrase(passphrase_stdin, confirm=True) if with_key else None
    with store_or_fail(home, json_output, backup=str(file)) as store:
        report = create_backup(store, file, actor=local_actor(), passphrase=passphrase)
    if json_output:
        print_json(report.as_dict())
        return
    counts = report.counts
    console.print(
        f"backed up {report.database} store to {report.path} ({report.bytes:,} bytes, key {report.key_id}"
        f"{', key included under the passphrase' if report.with_key else '; the key is NOT in it: keep the key file safe'}): "
        f"{counts['subjects']} subjects, {counts['reference_images']} reference images, {counts['alerts']} alerts, "
        f"{counts['deployments']} deployments, {counts['audit_events']} audit entries"
    )


def restore(
    file: FileArgument,
    passphrase_stdin: PassphraseStdinOption = False,
    anchor: Annotated[
        Optional[str],
        typer.Option("--anchor", metavar="SEQ:HASH", help="An audit anchor kept since: a backup older than it is refused."),
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Restore a backup into an empty data directory; then end the deployments it had running and apply retention."""
    from openfrt.errors import OpenFRTError
    from openfrt.live.recovery import settle_restored
    from openfrt.records import ChainAnchor, local_actor
    from openfrt.records.backup import read_header, restore_backup

    actor = local_actor()
    try:
        chain_anchor = ChainAnchor.parse(anchor) if anchor else None
        header = read_header(file)
        needs_passphrase = bool(header.get("key")) and not os.environ.get("OPENFRT_KEY_FILE")
        passphrase = _passphrase(passphrase_stdin, confirm=False) if needs_passphrase else None
        report = restore_backup(file, home, actor=actor, passphrase=passphrase, anchor=chain_anchor,
                                settle=lambda store: settle_restored(store, actor=actor))
    except (OpenFRTError, OSError) as exc:
        fail(exc, json_output, backup=str(file))
    if json_output:
        print_json(report.as_dict())
        return
    counts, settled = report.counts, report.settled
    console.print(
        f"restored the {report.database} backup of {report.created_at.isoformat(timespec='seconds')} into {report.home}: "
        f"{counts['subjects']} subjects, {counts['reference_images']} reference images, {counts['alerts']} alerts, "
        f"{counts['deployments']} deployments; audit chain verified ({report.audit_entries} entries, anchor {report.anchor})"
    )
    if settled.get("interrupted"):
        console.print(f"ended as interrupted (running when the backup was taken): {', '.join(settled['interrupted'])}")
    if settled.get("expired_images_deleted"):
        console.print(f"deleted {settled['expired_images_deleted']} alert image(s) that expired since the backup")


def _passphrase(from_stdin: bool, *, confirm: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Passphrase for the encryption key", hide_input=True, confirmation_prompt=confirm))
