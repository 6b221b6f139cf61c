"""Biometric data crosses Ray only sealed, with a key made for one use and dropped after it.

Ray keeps actor-call arguments and return values in its object store, which spills to disk when
full, and sends them between nodes. The watchlist snapshot (to cameras), alerts with their images
(back to the driver) and the templates of an index shard therefore travel as AES-GCM ciphertext
under a fresh key that only the driver and the actors' memory hold: whatever Ray keeps or
spills is unreadable, and ending the deployment (or closing the index) makes it useless.
The key itself travels inline in the call that needs it, never through the object store.
"""

from __future__ import annotations

import pickle
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openfrt.records.crypto import KEY_BYTES, Cipher


class Seal:
    """One transport key and its cipher: ``seal`` a Python value, ``open`` it on the other side."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key if key is not None else AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        self._cipher = Cipher(self.key)

    def seal(self, value: Any) -> bytes:
        return self._cipher.encrypt(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def open(self, sealed: bytes) -> Any:
        """The value sealed under this key (pickle: both ends are openfrt processes of one cluster)."""
        return pickle.loads(self._cipher.decrypt(sealed))
