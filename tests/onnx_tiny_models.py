"""Tiny ONNX models with the real signatures of the user-supplied ONNX files, built in tests.

- insightface (Hallo's face_analysis/models): an SCRFD detector with a dynamic (1, 3, H, W)
  input and 9 outputs (score / box / keypoints for strides 8, 16, 32, two anchors, stride units)
  and an ArcFace recognizer (1, 3, 112, 112) -> (1, 512). Their weights make the outputs known:
  each stride's score head is the mean of ONE colour channel over its cell (stride 8 = red,
  16 = green, 32 = blue), boxes and keypoints are constant distances; the recognizer is global
  average pooling followed by a fixed linear map (``expected_embedding``).
- MDX-Net vocal separation (Kim_Vocal_2.onnx): input "input" (1, 4, 3072, 256) -> same shape.

Shared by the face-embedding, separation, CLI and ComfyUI tests (``write_face_models``,
``build_separator``). Needs the test-only ``onnx`` package.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, checker, helper, save

STRIDES = (8, 16, 32)
# (l, t, r, b) box distances and 5 keypoint offsets (dx, dy), stride units, per stride and anchor.
BOX = {8: [(2, 3, 4, 5), (2, 3, 4, 4.5)], 16: [(3, 3, 3, 4), (3, 3, 3, 3.5)], 32: [(1, 1, 1, 1)] * 2}
KPS = [(-0.8, -0.6), (0.8, -0.6), (0.0, 0.3), (-0.6, 1.2), (0.6, 1.2)]
SCORE_GAIN, SCORE_BIAS = (10.0, 10.0), (-5.0, -6.0)  # anchor 1 scores a bit lower than anchor 0
rng = np.random.default_rng(14)
REC_W = rng.normal(size=(3, 512)).astype(np.float32)
REC_B = rng.normal(size=(512,)).astype(np.float32)


def _const(name, array):
    return helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.astype(np.float32).ravel())


def _save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    checker.check_model(model)
    save(model, str(path))
    return path


def _head(stride, channel, kind):
    """Nodes + initializers for one output head; returns (nodes, inits, output name)."""
    out, cols = f"{kind}_{stride}", {"score": 1, "bbox": 4, "kps": 10}[kind]
    weight = np.zeros((2 * cols, 3, stride, stride), np.float32)
    if kind == "score":
        for anchor in range(2):
            weight[anchor, channel] = SCORE_GAIN[anchor] / stride**2
        bias = np.array(SCORE_BIAS, np.float32)
    elif kind == "bbox":
        bias = np.array(BOX[stride], np.float32).ravel()
    else:
        bias = np.tile(np.array(KPS, np.float32).ravel(), 2)
    names = [f"{out}_w", f"{out}_b", f"{out}_shape"]
    inits = [_const(names[0], weight), _const(names[1], bias),
             helper.make_tensor(names[2], TensorProto.INT64, [2], [-1, cols])]
    nodes = [helper.make_node("Conv", ["input.1", names[0], names[1]], [f"{out}_c"],
                              kernel_shape=[stride, stride], strides=[stride, stride])]
    last = f"{out}_c"
    if kind == "score":
        nodes.append(helper.make_node("Sigmoid", [last], [f"{out}_s"]))
        last = f"{out}_s"
    nodes += [helper.make_node("Transpose", [last], [f"{out}_t"], perm=[0, 2, 3, 1]),
              helper.make_node("Reshape", [f"{out}_t", names[2]], [out])]
    return nodes, inits, out


def build_detector(path):
    nodes, inits, outs = [], [], []
    for kind in ("score", "bbox", "kps"):
        for channel, stride in enumerate(STRIDES):
            n, i, o = _head(stride, channel, kind)
            nodes, inits, outs = nodes + n, inits + i, outs + [o]
    graph = helper.make_graph(
        nodes, "scrfd_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [f"n{o}", int(o.startswith("bbox")) * 3
                                                               + int(o.startswith("kps")) * 9 + 1])
         for o in outs], inits)
    return _save(graph, path)


def build_recognizer(path, size=112, own_normalisation=False, second_input=False):
    """GlobalAveragePool -> Flatten -> Gemm(REC_W, REC_B): (1, 3, size, size) -> (1, 512)."""
    nodes, inits, first = [], [], "input.1"
    extra = [helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512])] if second_input else []
    if own_normalisation:  # MXNet-style: the graph starts with Sub / Mul nodes of those names
        inits += [_const("mean", np.array([127.5])), _const("scale", np.array([1 / 127.5]))]
        nodes += [helper.make_node("Sub", ["input.1", "mean"], ["x0"], name="_minus0"),
                  helper.make_node("Mul", ["x0", "scale"], ["x1"], name="_mul0")]
        first = "x1"
    inits += [_const("W", REC_W), _const("B", REC_B)]
    nodes += [helper.make_node("GlobalAveragePool", [first], ["p"], name="pool"),
              helper.make_node("Flatten", ["p"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "W", "B"], ["embedding"], name="fc")]
    graph = helper.make_graph(
        nodes, "arcface_tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])] + extra,
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 512])], inits)
    return _save(graph, path)


def expected_embedding(crop, mean=127.5, std=127.5):
    return REC_W.T @ ((crop.astype(np.float64) - mean) / std).mean(axis=(0, 1)) + REC_B


def write_face_models(folder):
    """Hallo's layout under ``folder``: ``models/`` with a detector and a recognizer (plus a
    192 px landmark-like model that sorts first and must be skipped). Returns ``folder``."""
    from pathlib import Path

    models = Path(folder) / "models"
    models.mkdir(parents=True, exist_ok=True)
    build_recognizer(models / "2d106det.onnx", size=192)
    build_recognizer(models / "glintr100.onnx")
    build_detector(models / "scrfd_10g_bnkps.onnx")
    return Path(folder)


SEPARATOR_SHAPE = [1, 4, 3072, 256]


def build_separator(path, op: str = "identity", shape=SEPARATOR_SHAPE):
    """identity | half (x 0.5) | swap (left <-> right: channels [2, 3, 0, 1])."""
    inits, nodes = [], []
    if op == "identity":
        nodes.append(helper.make_node("Identity", ["input"], ["output"]))
    elif op == "half":
        inits.append(helper.make_tensor("k", TensorProto.FLOAT, [], [0.5]))
        nodes.append(helper.make_node("Mul", ["input", "k"], ["output"]))
    else:
        inits.append(helper.make_tensor("idx", TensorProto.INT64, [4], [2, 3, 0, 1]))
        nodes.append(helper.make_node("Gather", ["input", "idx"], ["output"], axis=1))
    graph = helper.make_graph(
        nodes, "mdx_tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path
