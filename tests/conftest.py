"""Shared fixtures: where ../shared is, and engines built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfrt.vision import EngineConfig, FaceEngine

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SAMPLES = SHARED / "faces" / "samples"
YUNET_MODEL = SHARED / "models" / "face_detection_yunet_2023mar.onnx"


def need(path: Path) -> Path:
    """Skip the calling test, with a reason, when a file from ../shared is absent."""
    if not path.exists():
        pytest.skip(f"needs {path} (the shared test data beside the project), which is absent")
    return path


@pytest.fixture(scope="session")
def samples() -> Path:
    return need(SAMPLES)


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    return need(YUNET_MODEL)


@pytest.fixture(scope="session")
def hog_engine() -> FaceEngine:
    return FaceEngine(EngineConfig(detector="hog", embedder="dlib"))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep converted models out of the user's real cache; shared by all tests of a session."""
    monkeypatch.setenv("OPENFRT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model-cache"))
