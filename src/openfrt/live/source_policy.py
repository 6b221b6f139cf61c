"""Which camera sources a deployment may name: checked when it is planned, and again each
time a source is opened or reopened.

A source is something the server opens on an officer's say-so, so it is held to a rule:

* a stream — ``rtsp://``, ``rtsps://``, ``http://`` or ``https://`` — on a network an
  administrator allowed (:mod:`openfrt.net_policy`, ``OPENFRT_ALLOWED_NETWORKS``);
* a webcam, by index (``0``) or device (``/dev/video0``);
* a video file or a folder of images inside the footage directory (``OPENFRT_FOOTAGE_DIR``,
  default ``footage`` in the data directory), after symbolic links and ``..`` are resolved —
  never a file elsewhere on the server, which would be published as an alert frame.

Anything else is refused, other schemes first (``tcp://``, ``udp://``, ``file:``, FFmpeg's
``concat:`` and ``subfile:``), because FFmpeg would otherwise open them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from openfrt.net_policy import DestinationRefused, NetworkPolicy

FOOTAGE_DIR_ENV = "OPENFRT_FOOTAGE_DIR"
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https"})
#: A webcam by index or by Linux device; the index is what OpenCV opens.
WEBCAM = re.compile(r"(?:/dev/video)?(\d{1,3})")
#: Something FFmpeg would read as a protocol name: letters, then a colon.
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.,-]*:")


@dataclass(frozen=True)
class SourcePolicy:
    footage_dir: Path
    network: NetworkPolicy = field(default_factory=NetworkPolicy)

    @classmethod
    def from_env(cls, home: Path) -> SourcePolicy:
        """The footage directory (``OPENFRT_FOOTAGE_DIR``, else ``home/footage``) and the allowed networks."""
        configured = os.environ.get(FOOTAGE_DIR_ENV)
        return cls(Path(configured).expanduser() if configured else home / "footage", NetworkPolicy.from_env())

    def check(self, source: str) -> str:
        """The source to open, if it is allowed: a stream URL or webcam as given, a file or folder
        as its resolved absolute path. Raises :class:`DestinationRefused` otherwise."""
        if webcam := WEBCAM.fullmatch(source):
            return webcam.group(1)
        if SCHEME.match(source):
            self.network.check_url(source, STREAM_SCHEMES)
            return source
        path = Path(source).expanduser()
        resolved = (path if path.is_absolute() else Path.cwd() / path).resolve()
        footage = self.footage_dir.expanduser().resolve()
        if not resolved.is_relative_to(footage):
            raise DestinationRefused(
                f"{source} is not inside the footage directory {footage}: files and image folders are read only from there "
                f"(an administrator sets it with {FOOTAGE_DIR_ENV}); streams need an rtsp(s):// or http(s):// URL"
            )
        return str(resolved)
