"""Backups of a running system, and their restoration into an empty data directory.

**What a backup holds.** A consistent snapshot of the database — SQLite's ``VACUUM INTO`` (a
read transaction: writers carry on, and the copy holds live rows only, no free pages with
deleted data) or ``pg_dump`` in one snapshot — with the counts of its main tables read in that
same snapshot, the search index files, and the settings (``models.json``). The key only when
asked, wrapped under a passphrase (scrypt, AES-GCM). The search index need not match the
snapshot: its manifest does not match the restored database then, and it is rebuilt on use.

**File format.** ``OPENFRT-BACKUP`` and a plaintext JSON header (format, time, database kind,
schema revision, key id, audit head, the wrapped key if any), then one AES-256-GCM stream over a
tar of the parts, authenticated together with the header (``cryptography``'s streaming GCM;
the tag ends the file). The stream's key is derived from the store's key with HKDF and a random
salt, so a backup opens only with the store's key of its day (or the passphrase, when it
carries the key). Restoring decrypts to a file and checks the tag before anything is used.

**Restoring** needs an empty data directory (and, for PostgreSQL, an empty database). It checks
the restored counts against the backup's, verifies the audit chain, and refuses a backup older
than an audit anchor given with it. Then ``settle`` runs on the restored store: the command
ends every deployment the backup had running as interrupted (their processes belonged to the
system the backup was taken from) and runs retention at once (alert images that expired since
the backup are deleted again, audited) — see :func:`openfrt.live.recovery.settle_restored`.
The README says what an older backup brings back.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher as BlockCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select
from sqlalchemy.engine import URL, make_url

from openfrt import __version__, config
from openfrt.errors import OpenFRTError
from openfrt.records.audit import AuditAction, ChainAnchor, record_event, verify_chain
from openfrt.records.crypto import KEY_BYTES, key_id, read_key_file, write_key_file
from openfrt.records.database import make_engine
from openfrt.records.models import (
    Alert,
    AlertMedia,
    AuditChainHead,
    AuditEvent,
    Deployment,
    ReferenceImage,
    ReferenceTemplate,
    Subject,
    User,
    Watchlist,
    utc_now,
)
from openfrt.records.store import RecordStore

MAGIC = b"OPENFRT-BACKUP\n"
FORMAT = 1
_LENGTH = struct.Struct(">I")
TAG_BYTES = 16
NONCE_BYTES = 12
SALT_BYTES = 16
#: scrypt cost for the passphrase that wraps a backup's key: 128 MiB and about a second.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
#: Shortest passphrase accepted for wrapping a key (as for passwords: length is what counts).
MIN_PASSPHRASE_LENGTH = 12
CHUNK = 1 << 20

#: The tables whose row counts a backup records and a restore checks.
COUNTED = {
    "subjects": Subject, "reference_images": ReferenceImage, "templates": ReferenceTemplate, "watchlists": Watchlist,
    "deployments": Deployment, "alerts": Alert, "alert_media": AlertMedia, "users": User, "audit_events": AuditEvent,
}
SQLITE_MEMBER, PGDUMP_MEMBER, COUNTS_MEMBER, SETTINGS_MEMBER, INDEX_DIR = (
    "database/openfrt.db", "database/openfrt.pgdump", "counts.json", "models.json", "index")


class BackupError(OpenFRTError):
    """A backup cannot be written or restored: wrong passphrase or key, damaged file, a data
    directory or database that is not empty, a missing or mismatched pg_dump."""


@dataclass(frozen=True)
class BackupReport:
    """A backup written: where, when, of which database, whether it carries the key, what it holds."""

    path: Path
    created_at: datetime
    database: str
    key_id: str
    with_key: bool
    counts: dict[str, int]
    audit_seq: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "created_at": self.created_at.isoformat(), "database": self.database,
                "key_id": self.key_id, "with_key": self.with_key, "counts": self.counts, "audit_seq": self.audit_seq,
                "bytes": self.bytes}


@dataclass(frozen=True)
class RestoreReport:
    """A restore done: the backup's time, what came back, and what the restore then did."""

    home: Path
    created_at: datetime
    database: str
    counts: dict[str, int]
    audit_entries: int
    anchor: str | None
    settled: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"home": str(self.home), "created_at": self.created_at.isoformat(), "database": self.database,
                "counts": self.counts, "audit_entries": self.audit_entries, "anchor": self.anchor,
                "settled": self.settled, "files": self.files}


# -- writing ---------------------------------------------------------------------------------


def create_backup(store: RecordStore, path: Path, *, actor: str, passphrase: str | None = None) -> BackupReport:
    """Write a backup of ``store`` to ``path`` (which must not exist); with ``passphrase`` it
    carries the store's key, wrapped. The backup is audited first, so it holds its own entry."""
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} already exists; a backup never overwrites a file")
    keys = read_key_file(config.key_file(store.home))
    if len(keys) > 1:
        raise BackupError("a key rotation is in progress: finish it (openfrt keys rotate) before taking a backup")
    if passphrase is not None:
        _check_passphrase(passphrase)
    database = store.engine.dialect.name
    with store.transaction() as session:
        record_event(session, AuditAction.backup_created, actor=actor, target=path.name,
                     details={"database": database, "with_key": passphrase is not None, "key_id": key_id(keys[0]).hex()})
    work = Path(tempfile.mkdtemp(prefix=".backup-", dir=store.home))
    try:
        members = _snapshot(store, work)
        counts = json.loads((work / COUNTS_MEMBER).read_text())
        header = {
            "format": FORMAT, "openfrt": __version__, "created_at": utc_now().isoformat(), "database": database,
            "key_id": key_id(keys[0]).hex(), "salt": _b64(os.urandom(SALT_BYTES)), "nonce": _b64(os.urandom(NONCE_BYTES)),
            "key": _wrap(keys[0], passphrase) if passphrase is not None else None,
            "audit": counts.pop("_audit"), "counts": counts,
        }
        (work / COUNTS_MEMBER).write_text(json.dumps(counts))
        partial = path.with_name(f".{path.name}.partial")
        _write_encrypted(partial, header, keys[0], members)
        os.replace(partial, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BackupReport(path, datetime.fromisoformat(header["created_at"]), database, header["key_id"], passphrase is not None,
                        counts, header["audit"]["seq"], path.stat().st_size)


def _snapshot(store: RecordStore, work: Path) -> list[tuple[str, Path]]:
    """The parts of a backup, in ``work``: the database in one snapshot (with its counts), the
    index files and the settings, as (name in the backup, file) pairs."""
    if store.engine.dialect.name == "sqlite":
        snapshot = work / "openfrt.db"
        with store.engine.connect() as connection:
            connection.exec_driver_sql("VACUUM INTO ?", (str(snapshot),))
        counting = create_engine(f"sqlite:///{snapshot}")  # plain: no write-ahead log beside the copy
        try:
            with counting.connect() as connection:
                _write_counts(connection, work / COUNTS_MEMBER)
        finally:
            counting.dispose()
        members = [(SQLITE_MEMBER, snapshot)]
    else:
        dump = work / "openfrt.pgdump"
        with store.engine.connect() as connection:
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot_id = connection.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            _write_counts(connection, work / COUNTS_MEMBER)
            _pg_tool("pg_dump", store.engine, ["--format=custom", "--no-owner", "--no-privileges", f"--snapshot={snapshot_id}",
                                               f"--file={dump}"])
            connection.rollback()
        members = [(PGDUMP_MEMBER, dump)]
    members.append((COUNTS_MEMBER, work / COUNTS_MEMBER))
    settings = store.home / SETTINGS_MEMBER
    if settings.is_file():
        members.append((SETTINGS_MEMBER, settings))
    index = store.home / INDEX_DIR
    if index.is_dir():
        members += [(f"{INDEX_DIR}/{part.name}", part) for part in sorted(index.iterdir())
                    if part.is_file() and not part.name.startswith(".") and not part.name.endswith(".partial")]
    return members


def _write_counts(connection: Connection, path: Path) -> None:
    counts: dict[str, Any] = {name: connection.scalar(select(func.count()).select_from(model)) for name, model in COUNTED.items()}
    head = connection.execute(select(AuditChainHead.seq, AuditChainHead.entry_hash)).one_or_none()
    counts["_audit"] = {"seq": head.seq if head else 0, "hash": head.entry_hash if head else None}
    path.write_text(json.dumps(counts))


class _Encrypting:
    """A write-only file that encrypts what it is given (streaming AES-GCM) into ``raw``."""

    def __init__(self, raw: IO[bytes], key: bytes, nonce: bytes, associated: bytes) -> None:
        self.raw = raw
        self._encryptor = BlockCipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
        self._encryptor.authenticate_additional_data(associated)

    def write(self, data: bytes) -> int:
        self.raw.write(self._encryptor.update(data))
        return len(data)

    def finish(self) -> None:
        self.raw.write(self._encryptor.finalize())
        self.raw.write(self._encryptor.tag)


def _write_encrypted(path: Path, header: dict[str, Any], key: bytes, members: list[tuple[str, Path]]) -> None:
    preamble = _preamble(header)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as raw:
            raw.write(preamble)
            stream = _Encrypting(raw, _payload_key(key, header), _unb64(header["nonce"]), preamble)
            with tarfile.open(fileobj=stream, mode="w|") as archive:  # type: ignore[call-overload]
                for name, source in members:
                    archive.add(str(source), arcname=name, recursive=False)
            stream.finish()
            raw.flush()
            os.fsync(raw.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


# -- reading ---------------------------------------------------------------------------------


def read_header(path: Path) -> dict[str, Any]:
    """A backup's plaintext header (what it is, when it was taken, which key it needs)."""
    with Path(path).open("rb") as raw:
        header, _ = _read_preamble(raw, path)
    return header


Settle = Callable[[RecordStore], dict[str, Any]]


def restore_backup(
    path: Path,
    home: Path | None = None,
    *,
    actor: str,
    passphrase: str | None = None,
    anchor: ChainAnchor | None = None,
    settle: Settle | None = None,
) -> RestoreReport:
    """Restore the backup at ``path`` into the empty data directory ``home`` (and its database);
    ``settle`` then works on the restored store (see the module docstring)."""
    path, home = Path(path), config.home_dir(home)
    if home.exists() and any(home.iterdir()):
        raise BackupError(f"{home} is not empty: restore into an empty data directory")
    with Path(path).open("rb") as raw:
        header, preamble = _read_preamble(raw, path)
    if anchor is not None and header["audit"]["seq"] < anchor.seq:
        raise BackupError(f"this backup ends at audit entry {header['audit']['seq']}, before the anchor {anchor} you hold: it "
                          "predates later changes (deletions among them); restore a newer backup")
    url = make_url(config.database_url(home))
    if url.get_backend_name() != header["database"]:
        raise BackupError(f"this is a {header['database']} backup; the data directory's database is {url.get_backend_name()} "
                          "(OPENFRT_DATABASE_URL): restore it into the same kind of database")
    keys, key_from_backup = _restore_keys(header, passphrase)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    placed: list[Path] = []
    try:
        with _decrypted(path, header, preamble, keys[0], home) as parts:
            _restore_database(parts, url, placed)
            for part in sorted(parts.rglob("*")):
                relative = part.relative_to(parts).as_posix()
                if part.is_file() and (relative == SETTINGS_MEMBER or relative.startswith(f"{INDEX_DIR}/")):
                    target = home / relative
                    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                    shutil.move(str(part), target)
                    placed.append(target)
            expected = json.loads((parts / COUNTS_MEMBER).read_text())
        if key_from_backup:
            write_key_file(config.key_file(home), keys)
        return _check_restored(home, header, expected, actor=actor, anchor=anchor, settle=settle)
    except BaseException:
        for entry in home.iterdir():  # it was empty: leave it so, to try again
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        raise


def _check_restored(home: Path, header: dict[str, Any], expected: dict[str, int], *, actor: str,
                    anchor: ChainAnchor | None, settle: Settle | None) -> RestoreReport:
    """Open the restored store (migrating it if the backup is older than this openfrt), check it
    holds what the backup recorded and that its audit chain verifies, audit the restore, settle."""
    with RecordStore.open(home) as store:
        with store.transaction() as session:
            counts = {name: session.scalar(select(func.count()).select_from(model)) or 0 for name, model in COUNTED.items()}
            if counts != expected:
                raise BackupError(f"the restored database does not hold what the backup recorded: {counts} != {expected}")
            chain = verify_chain(session, [anchor] if anchor else [])
            if not chain.ok:
                raise BackupError(f"the restored audit log does not verify: {'; '.join(chain.problems[:5])}")
            record_event(session, AuditAction.backup_restored, actor=actor, target=str(home),
                         details={"created_at": header["created_at"], "database": header["database"], "counts": counts,
                                  "audit_seq": header["audit"]["seq"], "anchor": str(anchor) if anchor else None})
        settled = settle(store) if settle is not None else {}
    return RestoreReport(home, datetime.fromisoformat(header["created_at"]), header["database"], counts, chain.entries,
                         str(chain.anchor) if chain.anchor else None, settled,
                         sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()))


def _restore_keys(header: dict[str, Any], passphrase: str | None) -> tuple[list[bytes], bool]:
    """The keys to open the backup with, and whether they came from it (to be written to the
    new data directory) rather than from the configured key file."""
    configured = os.environ.get("OPENFRT_KEY_FILE")
    if configured:
        keys = read_key_file(Path(configured).expanduser())
        from_backup = False
    elif header.get("key"):
        if passphrase is None:
            raise BackupError("this backup carries its key under a passphrase: give the passphrase")
        keys, from_backup = [_unwrap(header["key"], passphrase)], True
    else:
        raise BackupError(f"this backup does not carry its key: point OPENFRT_KEY_FILE at the key file of the store it was "
                          f"taken from (key id {header['key_id']})")
    if key_id(keys[0]).hex() != header["key_id"]:
        raise BackupError(f"the key file holds key {key_id(keys[0]).hex()}, but this backup was taken under key {header['key_id']}")
    return keys, from_backup


@contextmanager
def _decrypted(path: Path, header: dict[str, Any], preamble: bytes, key: bytes, home: Path) -> Iterator[Path]:
    """The backup's parts, decrypted and verified, in a private folder inside ``home`` (removed after)."""
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=home))
    try:
        payload = work / "payload.tar"
        size = path.stat().st_size
        with path.open("rb") as raw, payload.open("wb") as plain:
            raw.seek(size - TAG_BYTES)
            tag = raw.read(TAG_BYTES)
            raw.seek(len(preamble))
            decryptor = BlockCipher(algorithms.AES(_payload_key(key, header)), modes.GCM(_unb64(header["nonce"]), tag)).decryptor()
            decryptor.authenticate_additional_data(preamble)
            remaining = size - TAG_BYTES - len(preamble)
            while remaining > 0:
                chunk = raw.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                plain.write(decryptor.update(chunk))
            try:
                decryptor.finalize()
            except InvalidTag:
                raise BackupError(f"{path} is damaged or was altered (its authentication tag does not match)") from None
        parts = work / "parts"
        with tarfile.open(payload) as archive:
            archive.extractall(parts, filter="data")
        payload.unlink()
        yield parts
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _restore_database(parts: Path, url: URL, placed: list[Path]) -> None:
    if url.get_backend_name() == "sqlite":
        target = Path(str(url.database))
        if target.exists():
            raise BackupError(f"{target} already exists: restore into an empty data directory")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.move(str(parts / SQLITE_MEMBER), target)
        placed.append(target)
        return
    with _engine(url.render_as_string(hide_password=False)) as engine:
        if inspect(engine).get_table_names():
            raise BackupError(f"database {url.database} is not empty: restore into an empty database")
        _pg_tool("pg_restore", engine, ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
                                        str(parts / PGDUMP_MEMBER)])


# -- PostgreSQL tools, keys, helpers ---------------------------------------------------------


def _pg_tool(tool: str, engine: Engine, arguments: list[str]) -> None:
    """Run ``pg_dump``/``pg_restore`` of the server's major version (or newer) on the engine's
    database, the password passed in the environment, never on the command line."""
    with engine.connect() as connection:
        server = int(connection.exec_driver_sql("SHOW server_version_num").scalar_one()) // 10000
    program = _find_pg_tool(tool, server)
    url = engine.url
    environment = {**os.environ, "PGHOST": url.host or "localhost", "PGPORT": str(url.port or 5432),
                   "PGUSER": url.username or "", "PGDATABASE": url.database or "", "PGPASSWORD": url.password or ""}
    option = ["--dbname", url.database or ""] if tool == "pg_restore" else []
    done = subprocess.run([program, *option, *arguments], env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{tool} failed: {done.stderr.strip()[-2000:]}")


def _find_pg_tool(tool: str, server_major: int) -> str:
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{tool}")]
    if found := shutil.which(tool):
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file():
            version = subprocess.run([str(candidate), "--version"], capture_output=True, text=True).stdout
            major = int("".join(c for c in version.split()[-1].split(".")[0] if c.isdigit()) or 0)
            if major >= server_major:
                return str(candidate)
    raise BackupError(f"{tool} for PostgreSQL {server_major} (or newer) was not found: install the PostgreSQL client "
                      f"of the server's version (Debian: postgresql-client-{server_major})")


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _payload_key(key: bytes, header: dict[str, Any]) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_unb64(header["salt"]), info=b"openfrt backup v1").derive(key)


def _kek(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase.encode())


def _wrap(key: bytes, passphrase: str) -> dict[str, Any]:
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    wrapped = AESGCM(_kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, key, b"openfrt backup key v1")
    return {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(salt), "nonce": _b64(nonce),
            "wrapped": _b64(wrapped)}


def _unwrap(wrapping: dict[str, Any], passphrase: str) -> bytes:
    if wrapping.get("kdf") != "scrypt":
        raise BackupError(f"the backup's key is wrapped with {wrapping.get('kdf')!r}, which this openfrt does not know")
    kek = _kek(passphrase, _unb64(wrapping["salt"]), int(wrapping["n"]), int(wrapping["r"]), int(wrapping["p"]))
    try:
        return AESGCM(kek).decrypt(_unb64(wrapping["nonce"]), _unb64(wrapping["wrapped"]), b"openfrt backup key v1")
    except InvalidTag:
        raise BackupError("wrong passphrase (or the backup's key was altered)") from None


def _check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        raise BackupError(f"the passphrase that protects the key must be at least {MIN_PASSPHRASE_LENGTH} characters")


def _preamble(header: dict[str, Any]) -> bytes:
    encoded = json.dumps(header, sort_keys=True).encode()
    return MAGIC + _LENGTH.pack(len(encoded)) + encoded


def _read_preamble(raw: IO[bytes], path: Path) -> tuple[dict[str, Any], bytes]:
    magic = raw.read(len(MAGIC))
    if magic != MAGIC:
        raise BackupError(f"{path} is not an openfrt backup")
    length_bytes = raw.read(_LENGTH.size)
    (length,) = _LENGTH.unpack(length_bytes)
    encoded = raw.read(length)
    try:
        header = json.loads(encoded)
    except ValueError:
        raise BackupError(f"{path} has a damaged header") from None
    if header.get("format") != FORMAT:
        raise BackupError(f"{path} is backup format {header.get('format')!r}; this openfrt reads format {FORMAT}")
    return header, magic + length_bytes + encoded


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text_value: str) -> bytes:
    return base64.b64decode(text_value)


__all__ = ["BackupError", "BackupReport", "RestoreReport", "create_backup", "read_header", "restore_backup"]
