"""Encryption at rest for reference images, templates, alert media, camera credentials and the
search index.

One symmetric key (AES-256-GCM) protects everything biometric the store keeps. The key lives
in a file so that it can sit on a different volume from the data (``OPENFRT_KEY_FILE``); when
none is configured, the first run creates one inside the data directory with mode 0600 and
warns, because a key stored beside the data it protects only guards against casual reading.

Every ciphertext names its key (an 8-byte id derived from it, also authenticated), so keys can
be rotated (:mod:`openfrt.records.keys`) while the data is in use: during a rotation the key
file holds the new key first and the retiring one after it, every process decrypts with either
and encrypts with the first, and each process follows the file when another process changes it.
Data written before key ids existed (format 1) is tried against each key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from openfrt.records.errors import KeyFileError

log = logging.getLogger(__name__)

#: First byte of a ciphertext written before key ids: format byte, nonce, AES-GCM output.
FORMAT_VERSION = b"\x01"
#: First byte of a ciphertext that names its key: format byte, key id, nonce, AES-GCM output.
KEYED_FORMAT = b"\x02"
NONCE_BYTES = 12
KEY_BYTES = 32
KEY_ID_BYTES = 8
#: How long a ciphertext's header is in the keyed format (what a key rotation compares).
KEYED_HEADER_BYTES = 1 + KEY_ID_BYTES


class UnknownKeyError(KeyFileError):
    """The data was encrypted with a key the key file does not hold (rotated away, or another store's)."""


def key_id(key: bytes) -> bytes:
    """A short public name for ``key``, derived from it one way (HKDF), stored with each ciphertext."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_ID_BYTES, salt=None, info=b"openfrt key id v1").derive(key)


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


class _Keys:
    """An immutable set of keys: the current one (encrypts) and retiring ones (decrypt only)."""

    def __init__(self, current: bytes, retiring: Sequence[bytes]) -> None:
        for key in (current, *retiring):
            if len(key) != KEY_BYTES:
                raise KeyFileError(f"an encryption key must be {KEY_BYTES} bytes, not {len(key)}")
        self.current_id = key_id(current)
        self.header = KEYED_FORMAT + self.current_id
        self.aeads = {key_id(key): AESGCM(key) for key in (current, *retiring)}
        # A separate key for fingerprints, so the encryption key is used for one purpose only.
        self.fingerprint_key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"openfrt fingerprint v1").derive(current)
        self._current = current

    def derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"openfrt derived " + purpose).derive(self._current)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return self.header + nonce + self.aeads[self.current_id].encrypt(nonce, plaintext, self.header)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if ciphertext[:1] == FORMAT_VERSION:
            nonce, body = ciphertext[1 : 1 + NONCE_BYTES], ciphertext[1 + NONCE_BYTES :]
            for aead in self.aeads.values():
                try:
                    return aead.decrypt(nonce, body, FORMAT_VERSION)
                except InvalidTag:
                    continue
            raise KeyFileError("encrypted data does not open with this key (wrong key file, or the data was altered)")
        if ciphertext[:1] != KEYED_FORMAT:
            raise KeyFileError("encrypted data is in an unknown format (not written by this version of openfrt)")
        header = ciphertext[:KEYED_HEADER_BYTES]
        aead = self.aeads.get(header[1:])
        if aead is None:
            raise UnknownKeyError(
                f"encrypted data names key {header[1:].hex()}, which the key file does not hold "
                f"(it holds {', '.join(sorted(key.hex() for key in self.aeads))}): a retired key, or another store's"
            )
        nonce, body = ciphertext[KEYED_HEADER_BYTES : KEYED_HEADER_BYTES + NONCE_BYTES], ciphertext[KEYED_HEADER_BYTES + NONCE_BYTES :]
        try:
            return aead.decrypt(nonce, body, header)
        except InvalidTag:
            raise KeyFileError("encrypted data does not open with its key (the data was altered)") from None


class Cipher:
    """Authenticated encryption of byte strings with one current key, and keyed fingerprints.

    The search index and the store need only ``encrypt``, ``decrypt``, ``fingerprint`` and
    ``derived_key``, so any key-management back-end can stand in for this class; ``key_id`` and
    ``is_current`` serve key rotation. ``retiring`` keys decrypt only (during a rotation).
    """

    def __init__(self, key: bytes, retiring: Sequence[bytes] = ()) -> None:
        self._keys = _Keys(key, retiring)

    def _ring(self, refresh: bool = False) -> _Keys:
        return self._keys

    @property
    def key_id(self) -> str:
        """The current key's id in hex (public: it names the key, it does not reveal it)."""
        return self._ring().current_id.hex()

    @property
    def header(self) -> bytes:
        """What every ciphertext of the current key starts with (format byte and key id)."""
        return self._ring().header

    def derived_key(self, purpose: bytes) -> bytes:
        """A key for one other purpose (HKDF-SHA256 of the current key, labelled ``purpose``): given
        to a process that needs it, it opens that purpose's data and nothing encrypted with this
        key. A rotation changes it too, so what it sealed is rebuilt under the new key."""
        return self._ring().derive(purpose)

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether ``ciphertext`` is encrypted with the current key (else a rotation re-encrypts it)."""
        return ciphertext[:KEYED_HEADER_BYTES] == self.header

    def fingerprint(self, data: bytes) -> str:
        """A keyed digest of ``data`` (HMAC-SHA256, 16 hex digits): equal inputs get equal
        fingerprints, so repeats can be counted, but without the key nobody can test a guess
        against one — unlike a plain hash of something short, such as a mistyped password."""
        return hmac.new(self._ring().fingerprint_key, data, hashlib.sha256).hexdigest()[:16]

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._ring().encrypt(plaintext)

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            return self._keys.decrypt(ciphertext)  # no file check per decryption: bulk reads decrypt millions
        except UnknownKeyError:
            return self._ring(refresh=True).decrypt(ciphertext)


class KeyFileCipher(Cipher):
    """The cipher of a key file, following the file when it changes (a rotation by another
    process): each encryption checks the file (one ``stat``), and data naming a key not yet
    loaded makes it read the file again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature = _signature(path)
        super().__init__(*_read_keys(path))

    def _ring(self, refresh: bool = False) -> _Keys:
        try:
            signature = _signature(self.path)
        except KeyFileError:
            if refresh:
                raise
            return self._keys  # the file is briefly unreadable (a volume remounting): keep the keys loaded
        if refresh or signature != self._signature:
            with self._lock:
                if refresh or signature != self._signature:
                    current, retiring = _read_keys(self.path)
                    self._keys, self._signature = _Keys(current, retiring), signature
        return self._keys


def load_cipher(path: Path, *, create: bool) -> KeyFileCipher:
    """The cipher whose keys are in ``path``; with ``create``, make the key file if it is absent.

    ``create`` is only for the default key inside the data directory: a configured key file that
    is missing means a wrong path or an unmounted volume, and a fresh key there would silently
    make every existing record unreadable.
    """
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist (OPENFRT_KEY_FILE names it)")
        _create_key_file(path)
    _warn_if_readable_by_others(path)
    return KeyFileCipher(path)


def read_key_file(path: Path) -> list[bytes]:
    """The keys in ``path``, current first: one base64 key per line (a rotation adds a second)."""
    try:
        lines = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.strerror}") from None
    try:
        keys = [base64.urlsafe_b64decode(line) for line in lines]
    except (binascii.Error, ValueError):
        raise KeyFileError(f"key file {path} does not hold base64 {KEY_BYTES}-byte keys") from None
    if not keys or any(len(key) != KEY_BYTES for key in keys):
        raise KeyFileError(f"key file {path} does not hold base64 {KEY_BYTES}-byte keys")
    return keys


def write_key_file(path: Path, keys: Sequence[bytes]) -> None:
    """Replace ``path`` with ``keys`` (current first) atomically: a new file, mode 0600 from its
    first byte, flushed to disk, renamed over the old one — never a torn or missing key file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(b"".join(base64.urlsafe_b64encode(key) + b"\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _read_keys(path: Path) -> tuple[bytes, list[bytes]]:
    current, *retiring = read_key_file(path)
    return current, retiring


def _signature(path: Path) -> tuple[int, int, int]:
    try:
        status = path.stat()
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.strerror}") from None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(new_key())
    # O_EXCL: never overwrite a key another process has just made; 0600 from the first byte.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key + b"\n")
    log.warning(
        "created encryption key %s inside the data directory; for production keep the key elsewhere "
        "(another volume or a secrets store) and point OPENFRT_KEY_FILE at it",
        path,
    )


def _warn_if_readable_by_others(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("key file %s is accessible to other users (mode %o); restrict it to 0600", path, mode & 0o777)
