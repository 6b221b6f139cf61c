"""Encrypted files of any size, written and read as a stream of authenticated segments.

The store's cipher seals one byte string at a time (and AES-GCM refuses more than 2 GiB in one
go); an index of 10 million templates is 6 GB. So a sealed file is a sequence of records, each
a length and one ciphertext of the caller's cipher, whose plaintext starts with the file's
random ``stream`` id, the record's sequence number and a last-record flag. A reader accepts the
records only in order, all of one stream, ending with the flagged one: records cannot be
dropped, reordered, spliced from another file or cut off without the file being refused, and
neither writing nor reading ever holds more than one segment of plaintext beyond the caller's.

Append-only logs (the index's change journal) use the same records without a last flag:
a reader takes them in order, stops cleanly at a torn final record (a crash mid-append) and
refuses anything else that does not open.
"""

from __future__ import annotations

import fcntl
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

#: First bytes of a sealed file (in the clear: a format marker, nothing about the contents).
MAGIC = b"OFRT-SEG"
#: Plaintext bytes per record of a sealed file.
SEGMENT_BYTES = 64 << 20
STREAM_ID_BYTES = 16

_LENGTH = struct.Struct("<Q")
_PREFIX = struct.Struct(f"<{STREAM_ID_BYTES}sQB")
_LAST = 1


class Cipher(Protocol):
    """What sealed files (and so the template indexes) need of the caller's encryption."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, data: bytes) -> bytes: ...


class SealedFileError(ValueError):
    """A sealed file or log that does not open: wrong key, altered, reordered, cut short."""


class SealedWriter:
    """Writes a sealed file to a temporary file beside ``path`` and renames it over on
    :meth:`commit` (fsynced first), so readers see the old file or the whole new one."""

    def __init__(self, path: Path, cipher: Cipher) -> None:
        self.path, self.cipher = Path(path), cipher
        self.stream = os.urandom(STREAM_ID_BYTES)
        self._sequence = 0
        self._buffer = bytearray()
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._temporary = Path(temporary)
        self._file = os.fdopen(descriptor, "wb")  # mode 0600 (mkstemp)
        self._file.write(MAGIC)

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` to the plaintext (sealed a segment at a time, never copied whole)."""
        view = memoryview(data).cast("B")
        while len(view):
            room = SEGMENT_BYTES - len(self._buffer)
            self._buffer += view[:room]
            view = view[room:]
            if len(self._buffer) == SEGMENT_BYTES:
                self._seal(bytes(self._buffer), last=False)
                self._buffer.clear()

    def commit(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary, self.path)

    def abandon(self) -> None:
        self._file.close()
        self._temporary.unlink(missing_ok=True)

    def _seal(self, data: bytes, *, last: bool) -> None:
        _write_record(self._file, self.cipher, self.stream, self._sequence, data, last=last)
        self._sequence += 1


def is_sealed(path: Path) -> bool:
    """Whether ``path`` starts like a sealed file (else an older single-ciphertext file)."""
    with open(path, "rb") as file:
        return file.read(len(MAGIC)) == MAGIC


def read_sealed(path: Path, cipher: Cipher) -> tuple[bytes, Iterator[bytes]]:
    """The stream id of the sealed file at ``path`` and an iterator over its plaintext segments;
    the iterator raises :class:`SealedFileError` at the first record that is out of place (and
    closes the file when exhausted or closed)."""
    segments = _segments(Path(path), cipher)
    stream = next(segments)
    return stream, segments


def _segments(path: Path, cipher: Cipher) -> Iterator[bytes]:
    """Yields the stream id, then each segment's plaintext, checking order and the end."""
    with open(path, "rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            raise SealedFileError("is not a sealed file")
        stream, sequence, last, data = _open_record(file, cipher, path)
        if sequence != 0:
            raise SealedFileError("does not start with its first segment")
        yield stream
        while True:
            yield data
            if last:
                if file.read(1):
                    raise SealedFileError("has data after its last segment")
                return
            found, number, last, data = _open_record(file, cipher, path)
            if found != stream or number != sequence + 1:
                raise SealedFileError("has segments out of order or from another file")
            sequence = number


def append_record(path: Path, cipher: Cipher, stream: bytes, sequence: int, data: bytes, expected_size: int) -> int:
    """Append one record to the log at ``path`` (created if absent), fsynced, under an exclusive
    lock; ``expected_size`` is the log's size as this process last knew it (0 for none): any
    other size means another process changed it since (:class:`StaleLogError`). Returns the
    log's new size."""
    with open(path, "ab") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        size = file.seek(0, os.SEEK_END)
        if size != expected_size:
            raise StaleLogError(f"{path} changed since this process read it ({size} bytes, not {expected_size})")
        if size == 0:
            file.write(MAGIC)
        _write_record(file, cipher, stream, sequence, data, last=False)
        file.flush()
        os.fsync(file.fileno())
        return file.tell()


class StaleLogError(SealedFileError):
    """The log changed since this process read it: its in-memory state must be reloaded."""


def read_log(path: Path, cipher: Cipher, stream: bytes) -> tuple[list[bytes], int]:
    """The records of the log at ``path`` (all of ``stream``, numbered from 0) and the size up
    to the last whole record; a torn final record (a crash mid-append) is left out, and
    :func:`truncate_log` removes it before the next append."""
    records: list[bytes] = []
    with open(path, "rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            raise SealedFileError("is not a sealed log")
        good = file.tell()
        while True:
            head = file.read(_LENGTH.size)
            if not head:
                return records, good
            (length,) = _LENGTH.unpack(head) if len(head) == _LENGTH.size else (None,)
            body = file.read(length) if length is not None else b""
            if length is None or len(body) < length:
                return records, good  # torn tail: the append that wrote it never returned
            found, sequence, _, data = _decrypt(cipher, body, path)
            if found != stream or sequence != len(records):
                raise SealedFileError("holds a record out of order or from another index")
            records.append(data)
            good = file.tell()


def truncate_log(path: Path, size: int) -> None:
    """Cut a torn record off the end of a log (``size`` from :func:`read_log`)."""
    with open(path, "r+b") as file:
        file.truncate(size)
        os.fsync(file.fileno())


def record_headers(path: Path, length: int) -> Iterator[bytes]:
    """The first ``length`` bytes of each record's ciphertext (the cipher's key header), so key
    rotation can tell which key a file was written with, without decrypting it."""
    with open(path, "rb") as file:
        if file.read(len(MAGIC)) != MAGIC:
            return
        while len(head := file.read(_LENGTH.size)) == _LENGTH.size:
            (size,) = _LENGTH.unpack(head)
            yield file.read(min(length, size))
            file.seek(size - min(length, size), os.SEEK_CUR)


def _write_record(file, cipher: Cipher, stream: bytes, sequence: int, data: bytes, *, last: bool) -> None:  # type: ignore[no-untyped-def]
    ciphertext = cipher.encrypt(_PREFIX.pack(stream, sequence, _LAST if last else 0) + data)
    file.write(_LENGTH.pack(len(ciphertext)))
    file.write(ciphertext)


def _open_record(file, cipher: Cipher, path: Path) -> tuple[bytes, int, bool, bytes]:  # type: ignore[no-untyped-def]
    head = file.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise SealedFileError("is cut short")
    (length,) = _LENGTH.unpack(head)
    body = file.read(length)
    if len(body) < length:
        raise SealedFileError("is cut short")
    return _decrypt(cipher, body, path)


def _decrypt(cipher: Cipher, body: bytes, path: Path) -> tuple[bytes, int, bool, bytes]:
    try:
        plaintext = cipher.decrypt(body)
    except Exception as error:  # the cipher is the caller's; any failure means the same thing
        raise SealedFileError(f"does not decrypt (wrong key, or altered): {error!r}") from error
    if len(plaintext) < _PREFIX.size:
        raise SealedFileError("holds a record too short to be one of openfrt's")
    stream, sequence, flags = _PREFIX.unpack_from(plaintext)
    return stream, sequence, bool(flags & _LAST), plaintext[_PREFIX.size :]
