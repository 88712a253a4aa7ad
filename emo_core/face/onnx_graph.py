"""Read the first node names of an ONNX file without the ``onnx`` package.

insightface decides whether a recognizer normalises its own input from the names of the graph's
first nodes, which onnxruntime does not expose. An ONNX file is a protobuf ``ModelProto``: field 7 is
the ``GraphProto``, whose field 1 holds the ``NodeProto`` entries (field 3 = name). This walks the
protobuf wire format, seeking past everything else (the weights), so only a few bytes are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_MODEL_GRAPH, _GRAPH_NODE, _NODE_NAME = 7, 1, 3


def _varint(stream: BinaryIO) -> int:
    value, shift = 0, 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise EOFError("truncated protobuf varint")
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return value
        shift += 7


def _fields(stream: BinaryIO, end: int):
    """Yield (field number, wire type, payload length or None) up to offset ``end``; the caller
    reads or skips a length-delimited payload (its start is the stream position)."""
    while stream.tell() < end:
        tag = _varint(stream)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            _varint(stream)
            yield number, wire, None
        elif wire in (_FIXED64, _FIXED32):
            stream.seek(8 if wire == _FIXED64 else 4, 1)
            yield number, wire, None
        elif wire == _BYTES:
            length = _varint(stream)
            start = stream.tell()
            yield number, wire, length
            stream.seek(start + length)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _node_name(data: bytes) -> str:
    import io

    stream = io.BytesIO(data)
    for number, wire, length in _fields(stream, len(data)):
        if number == _NODE_NAME and wire == _BYTES:
            return stream.read(length).decode("utf-8", errors="replace")
    return ""


def first_node_names(path, count: int) -> list[str]:
    """Names of the first ``count`` nodes of the ONNX model at ``path`` (fewer if it has fewer)."""
    names: list[str] = []
    with Path(path).open("rb") as stream:
        stream.seek(0, 2)
        size = stream.tell()
        stream.seek(0)
        for number, wire, length in _fields(stream, size):
            if number != _MODEL_GRAPH or wire != _BYTES:
                continue
            graph_end = stream.tell() + length
            for g_number, g_wire, g_length in _fields(stream, graph_end):
                if g_number == _GRAPH_NODE and g_wire == _BYTES:
                    names.append(_node_name(stream.read(g_length)))
                    if len(names) >= count:
                        return names
            return names
    return names
