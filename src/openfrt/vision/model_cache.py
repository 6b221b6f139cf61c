"""Cache of models converted from bundled weights (e.g. dlib's ResNet into ONNX).

Conversion takes seconds, so it happens once, on first use, and the result is kept under the
user's cache directory. The cache key is the SHA-256 of the source weights plus the converter's
version, so new weights or a changed converter rebuild the model; the built file's own checksum
is recorded beside it and verified before use, so a corrupted cache is rebuilt, never loaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import platformdirs
from rich.console import Console

from openfrt.errors import ModelError

_stderr = Console(stderr=True)


def cache_dir() -> Path:
    """``OPENFRT_CACHE_DIR`` if set, else the per-user cache directory."""
    configured = os.environ.get("OPENFRT_CACHE_DIR")
    return Path(configured) if configured else Path(platformdirs.user_cache_dir("openfrt")) / "models"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> None:
    """Refuse a model file that is missing or whose SHA-256 is not the one recorded for it."""
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if expected and sha256_of(path) != expected.lower():
        raise ModelError(f"{path}: SHA-256 is {sha256_of(path)}, expected {expected.lower()} — wrong or altered file")


@dataclass(frozen=True)
class ConvertedModel:
    """A model built from source weights by a converter function.

    ``build`` returns the serialised model bytes; ``converter_version`` must change whenever the
    converter's output would change, so that caches built by older code are not reused.
    """

    name: str
    sources: tuple[Path, ...]
    build: Callable[[], bytes]
    converter_version: str
    suffix: str = ".onnx"

    def key(self) -> str:
        digest = hashlib.sha256(self.converter_version.encode())
        for source in self.sources:
            digest.update(sha256_of(source).encode())
        return digest.hexdigest()[:16]

    def path(self) -> Path:
        return cache_dir() / f"{self.name}-{self.key()}{self.suffix}"

    def is_ready(self) -> bool:
        """True when a built copy with a matching checksum is in the cache."""
        path = self.path()
        checksum = path.with_name(path.name + ".sha256")
        return path.is_file() and checksum.is_file() and checksum.read_text().strip() == sha256_of(path)

    def ensure(self) -> Path:
        """Path of the built model, building (with a progress message) if missing or corrupt."""
        if self.is_ready():
            return self.path()
        with _stderr.status(f"Building {self.name} from {', '.join(s.name for s in self.sources)} (first use)…"):
            data = self.build()
        return _write_atomically(self.path(), data)


def _write_atomically(path: Path, data: bytes) -> Path:
    """Write the model and its checksum so a crash never leaves a half-written model in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".building-", delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
    path.with_name(path.name + ".sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    return path
