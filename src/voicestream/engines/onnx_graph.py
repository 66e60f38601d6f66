"""Read and extend an ONNX model's graph from its protobuf bytes, without the ``onnx`` package.

Two jobs, both for voices found on disk at start-up:

- ``graph_inputs``: the graph's input names, read from a memory map without touching the
  weights, so a truncated or mismatched model file is reported by name at start-up for the price
  of a few page reads instead of a 60 MB parse. A file whose fields run past its end is refused.
- ``read_nodes`` and ``with_extra_output``: find an intermediate tensor (a VITS duration
  predictor's rounded durations) and expose it as one more graph output, so ONNX Runtime returns
  it next to the audio. The graph is edited at the wire level: an output is one more
  ``ValueInfoProto`` appended to ``GraphProto`` and the enclosing length prefix rewritten.

Only the handful of fields these jobs need are decoded (``onnx.proto`` field numbers below);
everything else is skipped by its length. ``onnx`` itself is a development dependency only.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "OnnxNode",
    "OnnxReadError",
    "graph_inputs",
    "read_nodes",
    "with_extra_output",
]

# onnx.proto field numbers.
_MODEL_GRAPH = 7
_GRAPH_NODE = 1
_GRAPH_INPUT = 11
_GRAPH_OUTPUT = 12
_VALUE_INFO_NAME = 1
_VALUE_INFO_TYPE = 2
_TYPE_TENSOR = 1
_TENSOR_TYPE_ELEM = 1
_NODE_INPUT = 1
_NODE_OUTPUT = 2
_NODE_NAME = 3
_NODE_OP_TYPE = 4
_NODE_ATTRIBUTE = 5
_ATTR_NAME = 1
_ATTR_INTS = 8

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class OnnxReadError(ValueError):
    """The bytes are not a complete ONNX model (truncated, or not protobuf at all)."""


@dataclass(frozen=True, slots=True)
class OnnxNode:
    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # Integer-list attributes only (strides, kernel shapes): all the callers need.
    int_lists: dict[str, tuple[int, ...]]


Buffer = bytes | memoryview | mmap.mmap


def _varint(data: Buffer, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxReadError("a varint runs past the end of its field")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: Buffer, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end) of each field in ``data[start:end]``.

    For varints the "value" is the varint itself; for length-delimited fields the payload.
    """
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, after = _varint(data, pos, end)
        elif wire == _FIXED64:
            after = pos + 8
        elif wire == _FIXED32:
            after = pos + 4
        elif wire == _BYTES:
            length, pos = _varint(data, pos, end)
            after = pos + length
        else:
            raise OnnxReadError(f"unsupported protobuf wire type {wire}")
        if after > end:
            raise OnnxReadError("a field runs past the end of the file (truncated?)")
        yield number, wire, pos, after
        pos = after


def _text(data: Buffer, start: int, end: int) -> str:
    return bytes(data[start:end]).decode("utf-8", "replace")


def _graph_span(data: Buffer) -> tuple[int, int, int]:
    """(start of the graph field's key, payload start, payload end); checks the whole file."""
    graph: tuple[int, int, int] | None = None
    pos = 0
    size = len(data)
    for number, wire, start, end in _fields(data, 0, size):
        if number == _MODEL_GRAPH and wire == _BYTES:
            graph = (pos, start, end)
        pos = end
    if graph is None:
        raise OnnxReadError("no graph in the model")
    return graph


def graph_inputs(path: Path) -> tuple[str, ...]:
    """The names of the graph's inputs (initializers listed as inputs by old exporters too).

    Raises:
        OnnxReadError: the file is empty, truncated or not an ONNX model.
        OSError: the file cannot be read.
    """
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            raise OnnxReadError("the file is empty")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _, start, end = _graph_span(data)
            names: list[str] = []
            for number, wire, value_start, value_end in _fields(data, start, end):
                if number == _GRAPH_INPUT and wire == _BYTES:
                    names.append(_value_info_name(data, value_start, value_end))
            return tuple(names)


def _value_info_name(data: Buffer, start: int, end: int) -> str:
    for number, wire, value_start, value_end in _fields(data, start, end):
        if number == _VALUE_INFO_NAME and wire == _BYTES:
            return _text(data, value_start, value_end)
    return ""


def read_nodes(model: bytes) -> list[OnnxNode]:
    """Every node of the main graph, in file order (subgraphs are not entered).

    Raises:
        OnnxReadError: not a complete ONNX model.
    """
    view = memoryview(model)
    _, start, end = _graph_span(view)
    return [
        _node(view, value_start, value_end)
        for number, wire, value_start, value_end in _fields(view, start, end)
        if number == _GRAPH_NODE and wire == _BYTES
    ]


def _node(data: Buffer, start: int, end: int) -> OnnxNode:
    inputs: list[str] = []
    outputs: list[str] = []
    name = op_type = ""
    int_lists: dict[str, tuple[int, ...]] = {}
    for number, wire, value_start, value_end in _fields(data, start, end):
        if wire != _BYTES:
            continue
        if number == _NODE_INPUT:
            inputs.append(_text(data, value_start, value_end))
        elif number == _NODE_OUTPUT:
            outputs.append(_text(data, value_start, value_end))
        elif number == _NODE_NAME:
            name = _text(data, value_start, value_end)
        elif number == _NODE_OP_TYPE:
            op_type = _text(data, value_start, value_end)
        elif number == _NODE_ATTRIBUTE:
            attribute = _int_list_attribute(data, value_start, value_end)
            if attribute is not None:
                int_lists[attribute[0]] = attribute[1]
    return OnnxNode(op_type, name, tuple(inputs), tuple(outputs), int_lists)


def _int_list_attribute(data: Buffer, start: int, end: int) -> tuple[str, tuple[int, ...]] | None:
    name = ""
    ints: list[int] = []
    for number, wire, value_start, value_end in _fields(data, start, end):
        if number == _ATTR_NAME and wire == _BYTES:
            name = _text(data, value_start, value_end)
        elif number == _ATTR_INTS and wire == _VARINT:
            ints.append(_signed(_varint(data, value_start, value_end)[0]))
        elif number == _ATTR_INTS and wire == _BYTES:  # packed encoding
            pos = value_start
            while pos < value_end:
                value, pos = _varint(data, pos, value_end)
                ints.append(_signed(value))
    return (name, tuple(ints)) if name and ints else None


def _signed(value: int) -> int:
    # int64 fields are two's complement in a 10-byte varint.
    return value - (1 << 64) if value >= 1 << 63 else value


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(payload)) + payload


def with_extra_output(model: bytes, tensor: str, elem_type: int) -> bytes:
    """``model`` with the intermediate ``tensor`` added as a graph output of ``elem_type``
    (``TensorProto.DataType``: 1 float, 7 int64); shape left for ONNX Runtime to infer.

    Raises:
        OnnxReadError: not a complete ONNX model.
    """
    view = memoryview(model)
    key_start, start, end = _graph_span(view)
    tensor_type = _encode_varint(_TENSOR_TYPE_ELEM << 3 | _VARINT) + _encode_varint(elem_type)
    type_proto = _length_delimited(_TYPE_TENSOR, tensor_type)
    value_info = _length_delimited(_VALUE_INFO_NAME, tensor.encode()) + _length_delimited(
        _VALUE_INFO_TYPE, type_proto
    )
    extra = _length_delimited(_GRAPH_OUTPUT, value_info)
    # The weights are tens of megabytes: join slices of the input (memoryviews, no copies) into
    # one result allocated at its final size, so the peak is the input plus the output.
    return b"".join(
        (
            view[:key_start],
            _encode_varint(_MODEL_GRAPH << 3 | _BYTES),
            _encode_varint(end - start + len(extra)),
            view[start:end],
            extra,
            view[end:],
        )
    )
