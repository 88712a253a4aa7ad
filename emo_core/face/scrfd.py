"""SCRFD face detector (insightface ``scrfd_*_bnkps.onnx``, ``det_10g.onnx``): pre- and post-processing.

The network sees an RGB image letter-boxed into ``input_size`` (aspect kept, top-left, zero padded),
normalised as ``(x - 127.5) / 128``. It has one head per stride (8, 16, 32) with two anchors per
feature-map cell; outputs, in this order: 3 score maps (K*2, 1), 3 box-distance maps (K*2, 4) and
3 keypoint-offset maps (K*2, 10), all in stride units, rows ordered (row, column, anchor). A box is
``(cx - l, cy - t, cx + r, cy + b)`` around its cell centre ``(column, row) * stride``; keypoint k
is ``centre + (dx_k, dy_k)``. Detections scoring at least ``threshold`` are kept, mapped back to the
original image and de-duplicated by greedy NMS (IoU > ``nms_threshold``, the "+1 pixel" area
convention of insightface).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import resize_bilinear

STRIDES = (8, 16, 32)
NUM_ANCHORS = 2
DET_THRESHOLD = 0.5  # insightface FaceAnalysis.prepare default, which Hallo keeps
NMS_THRESHOLD = 0.4
DET_SIZE = (640, 640)  # (width, height): Hallo's face_analysis.prepare(det_size=(640, 640))


@dataclass(frozen=True)
class Detection:
    """One face: box (x0, y0, x1, y1) float pixels, score, keypoints (5, 2) float pixels (x, y)."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def letterbox(image: np.ndarray, input_size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Fit ``image`` (H, W, 3) uint8 into ``input_size`` (width, height), top-left, zero padded.

    Returns (canvas (height, width, 3) uint8, scale = resized height / original height).
    """
    in_w, in_h = input_size
    height, width = image.shape[:2]
    if height / width > in_h / in_w:
        new_h = in_h
        new_w = int(new_h / (height / width))
    else:
        new_w = in_w
        new_h = int(new_w * (height / width))
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = resize_bilinear(image, new_w, new_h)
    return canvas, new_h / height


def to_blob(canvas: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32, (x - 127.5) / 128."""
    return ((canvas.astype(np.float32) - 127.5) * np.float32(1 / 128)).transpose(2, 0, 1)[None].copy()


def anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    """(height * width * NUM_ANCHORS, 2) float32 cell centres (x, y) in input pixels, rows ordered
    (row, column, anchor) like the network's outputs."""
    ys, xs = np.mgrid[0:height, 0:width]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, NUM_ANCHORS, axis=0)


def _rows(output: np.ndarray, columns: int) -> np.ndarray:
    """A head output (K, C) or batched (1, K, C) -> (K, C)."""
    output = np.asarray(output)
    if output.ndim == 3:
        output = output[0]
    return output.reshape(-1, columns)


def decode(outputs: list, input_hw: tuple[int, int], threshold: float = DET_THRESHOLD):
    """Raw network outputs (9 arrays, see module doc) -> (scores (N,), boxes (N, 4), kps (N, 5, 2))
    in input-canvas pixels, for every anchor scoring at least ``threshold`` (unsorted)."""
    scores_all, boxes_all, kps_all = [], [], []
    for index, stride in enumerate(STRIDES):
        scores = _rows(outputs[index], 1)[:, 0]
        distances = _rows(outputs[index + 3], 4) * stride
        offsets = _rows(outputs[index + 6], 10) * stride
        centres = anchor_centres(input_hw[0] // stride, input_hw[1] // stride, stride)
        if len(centres) != len(scores):
            raise ValueError(
                f"SCRFD stride {stride}: {len(scores)} scores for {len(centres)} anchors of a "
                f"{input_hw} input; the model is not a 3-stride, 2-anchor SCRFD with keypoints"
            )
        keep = scores >= threshold
        centres = centres[keep]
        scores_all.append(scores[keep])
        boxes_all.append(np.concatenate([centres - distances[keep, :2],
                                         centres + distances[keep, 2:]], axis=1))
        kps_all.append(centres[:, None, :] + offsets[keep].reshape(-1, 5, 2))
    return np.concatenate(scores_all), np.concatenate(boxes_all), np.concatenate(kps_all)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_THRESHOLD) -> list[int]:
    """Indices of the boxes kept by greedy NMS, best score first (areas use width + 1, height + 1)."""
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order = np.argsort(scores, kind="stable")[::-1]
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        inter_w = np.maximum(0.0, np.minimum(boxes[best, 2], boxes[rest, 2])
                             - np.maximum(boxes[best, 0], boxes[rest, 0]) + 1)
        inter_h = np.maximum(0.0, np.minimum(boxes[best, 3], boxes[rest, 3])
                             - np.maximum(boxes[best, 1], boxes[rest, 1]) + 1)
        inter = inter_w * inter_h
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= iou_threshold]
    return kept


def detect_faces(session, image: np.ndarray, input_size=DET_SIZE,
                 threshold: float = DET_THRESHOLD) -> list[Detection]:
    """Run an SCRFD ``onnxruntime`` session on ``image`` (H, W, 3) uint8 RGB.

    input_size (width, height) is used unless the model fixes its own. Returns detections in
    original-image pixels, best score first.
    """
    shape = session.get_inputs()[0].shape
    if isinstance(shape[2], int) and isinstance(shape[3], int):
        input_size = (shape[3], shape[2])
    canvas, scale = letterbox(image, input_size)
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(names, {session.get_inputs()[0].name: to_blob(canvas)})
    scores, boxes, kps = decode(outputs, canvas.shape[:2], threshold)
    boxes, kps = boxes / scale, kps / scale
    # insightface sorts by score and suppresses in float32 (x0, y0, x1, y1, score) rows
    boxes = boxes.astype(np.float32)
    return [Detection(boxes[i], float(scores[i]), kps[i]) for i in nms(boxes, scores)]
