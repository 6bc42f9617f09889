"""Minimal safetensors reader/writer on numpy (no torch, no safetensors package).

Format: 8-byte little-endian header length N, N bytes of JSON header
{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
 "__metadata__": {...}}, then the raw little-endian C-order tensor bytes;
offsets are relative to the end of the header. The header is padded with
spaces to a multiple of 8 so the data area is aligned.

bfloat16 has no numpy dtype: pass a uint16 array of raw bf16 bits wrapped in
BF16(array); read() returns such tensors as BF16 too.
"""
import json
import struct

import numpy as np


class BF16:
    """Raw bfloat16 bits (uint16) tagged so the writer records dtype BF16."""

    def __init__(self, bits):
        self.bits = np.ascontiguousarray(bits, dtype=np.uint16)
        self.shape = self.bits.shape


def f32_to_bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even, NaN stays a quiet NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    is_nan = (u & 0x7FFFFFFF) > 0x7F800000
    quiet_nan = ((u >> 16) | 0x40).astype(np.uint16)
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)


def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


_DTYPES = {
    np.dtype(np.float32): "F32",
    np.dtype(np.float16): "F16",
    np.dtype(np.float64): "F64",
    np.dtype(np.int64): "I64",
    np.dtype(np.int32): "I32",
    np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8",
    np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL",
}
_NP_FROM_NAME = {v: k for k, v in _DTYPES.items()}


def _write_header(f, header, metadata):
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    f.write(struct.pack("<Q", len(text)))
    f.write(text)


def write(path, tensors, metadata=None):
    """Writes {name: ndarray or BF16} to path; names sorted for determinism."""
    header = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, BF16):
            dtype, raw, shape = "BF16", t.bits.astype("<u2").tobytes(), list(t.shape)
        else:
            a = np.array(t, order="C")   # (ascontiguousarray would make rank 0 rank 1)
            if a.dtype not in _DTYPES:
                raise ValueError(f"{name}: unsupported dtype {a.dtype}")
            dtype = _DTYPES[a.dtype]
            raw, shape = a.astype(a.dtype.newbyteorder("<")).tobytes(), list(a.shape)
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    with open(path, "wb") as f:
        _write_header(f, header, metadata)
        for raw in blobs:
            f.write(raw)


_ITEM_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def write_streamed(path, specs, metadata=None):
    """Writes tensors too large to hold at once. specs: {name: (dtype, shape,
    chunks)} with dtype a safetensors name ("F32", "BF16", ...) and chunks()
    yielding the tensor's little-endian bytes in order. Same layout as write()
    (names sorted); fails if a tensor's chunks do not add up to its size."""
    header = {}
    offset = 0
    for name in sorted(specs):
        dtype, shape, _ = specs[name]
        size = _ITEM_SIZE[dtype] * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    with open(path, "wb") as f:
        _write_header(f, header, metadata)
        for name in sorted(specs):
            begin, end = header[name]["data_offsets"]
            written = 0
            for raw in specs[name][2]():
                f.write(raw)
                written += len(raw)
            if written != end - begin:
                raise ValueError(f"{name}: wrote {written} bytes, expected {end - begin}")


def read(path):
    """Returns {name: ndarray or BF16} (checks offsets against the file size)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(body):
            raise ValueError(f"{name}: offsets outside the file")
        raw = body[begin:end]
        if info["dtype"] == "BF16":
            out[name] = BF16(np.frombuffer(raw, dtype="<u2").reshape(info["shape"]))
        else:
            dt = _NP_FROM_NAME[info["dtype"]].newbyteorder("<")
            out[name] = np.frombuffer(raw, dtype=dt).reshape(info["shape"]).astype(dt.newbyteorder("="))
    return out


def read_header(path):
    """(header dict without __metadata__, byte offset of the data area)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


def read_mapped(path):
    """Like read(), but the arrays are read-only views of a memory map of the
    file (nothing is loaded until used), for multi-gigabyte checkpoints."""
    header, data_start = read_header(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end <= len(mapped) - data_start:
            raise ValueError(f"{name}: offsets outside the file")
        raw = mapped[data_start + begin:data_start + end]
        if info["dtype"] == "BF16":
            out[name] = BF16(raw.view("<u2").reshape(info["shape"]))
        else:
            out[name] = raw.view(_NP_FROM_NAME[info["dtype"]].newbyteorder("<")).reshape(info["shape"])
    return out
