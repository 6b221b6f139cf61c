"""Encryption at rest for reference images, templates and the search index.

One symmetric key (AES-256-GCM) protects everything biometric the store keeps. The key lives
in a file so that it can sit on a different volume from the data (``OPENFRT_KEY_FILE``); when
none is configured, the first run creates one inside the data directory with mode 0600 and
warns, because a key stored beside the data it protects only guards against casual reading.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from openfrt.records.errors import KeyFileError

log = logging.getLogger(__name__)

#: First byte of every ciphertext, so the format (algorithm, nonce size) can change later.
FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12
KEY_BYTES = 32


class Cipher:
    """Authenticated encryption of byte strings with one key, and keyed fingerprints.

    Exactly ``encrypt``, ``decrypt``, ``fingerprint`` and ``derived_key``: the search index and the
    store take "a cipher" and need nothing else, so any key-management back-end can stand in for
    this class.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"an encryption key must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self._key = key
        # A separate key for fingerprints, so the encryption key is used for one purpose only.
        self._fingerprint_key = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"openfrt fingerprint v1").derive(key)

    def fingerprint(self, data: bytes) -> str:
        """A keyed digest of ``data`` (HMAC-SHA256, 16 hex digits): equal inputs get equal
        fingerprints, so repeats can be counted, but without the key nobody can test a guess
        against one — unlike a plain hash of something short, such as a mistyped password."""
        return hmac.new(self._fingerprint_key, data, hashlib.sha256).hexdigest()[:16]

    def derived_key(self, purpose: bytes) -> bytes:
        """A key for one other purpose (HKDF-SHA256 of this key, labelled ``purpose``): given to
        a process that needs it, it opens that purpose's data and nothing encrypted with this key."""
        return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"openfrt derived " + purpose).derive(self._key)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return FORMAT_VERSION + nonce + self._aead.encrypt(nonce, plaintext, FORMAT_VERSION)

    def decrypt(self, ciphertext: bytes) -> bytes:
        if ciphertext[:1] != FORMAT_VERSION:
            raise KeyFileError("encrypted data is in an unknown format (not written by this version of openfrt)")
        nonce, body = ciphertext[1 : 1 + NONCE_BYTES], ciphertext[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, body, FORMAT_VERSION)
        except InvalidTag:
            raise KeyFileError("encrypted data does not open with this key (wrong key file, or the data was altered)") from None


def load_cipher(path: Path, *, create: bool) -> Cipher:
    """The cipher whose key is in ``path``; with ``create``, make the key file if it is absent.

    ``create`` is only for the default key inside the data directory: a configured key file that
    is missing means a wrong path or an unmounted volume, and a fresh key there would silently
    make every existing record unreadable.
    """
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist (OPENFRT_KEY_FILE names it)")
        _create_key_file(path)
    _warn_if_readable_by_others(path)
    try:
        return Cipher(base64.urlsafe_b64decode(path.read_bytes().strip()))
    except (binascii.Error, ValueError):
        raise KeyFileError(f"key file {path} does not hold a base64 {KEY_BYTES}-byte key") from None
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be read: {exc.strerror}") from None


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8))
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
