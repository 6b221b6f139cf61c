"""Shared fixtures: where ../shared is, and engines built once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

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
def hog_engine(isolated_environment: None) -> FaceEngine:
    return FaceEngine(EngineConfig(detector="hog", embedder="dlib"))


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the user's real data directory and model cache out of every test.

    The converted-model cache is shared by the whole session so that models are built once.
    The camera source policy is configured as a test site's administrator would: the tests'
    cameras and receivers sit on 10.0.0.0/8 and on loopback, and their videos are made under
    the session's temporary directory, which is the footage directory. Tests of the policy
    itself set their own (``test_camera_sources.py``, ``test_net_policy.py``).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENFRT_HOME", str(tmp_path_factory.mktemp("home")))
        patch.setenv("OPENFRT_CACHE_DIR", str(tmp_path_factory.mktemp("model-cache")))
        patch.setenv("OPENFRT_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8")
        patch.setenv("OPENFRT_FOOTAGE_DIR", str(tmp_path_factory.getbasetemp()))
        for name in ("OPENFRT_DETECTOR", "OPENFRT_EMBEDDER", "OPENFRT_THRESHOLD", "OPENFRT_DATABASE_URL"):
            patch.delenv(name, raising=False)
        yield
