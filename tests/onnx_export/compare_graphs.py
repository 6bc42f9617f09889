"""Structural comparison of two graphs written by `fusec dump` (JSON IR):
the model as loaded from JSON and the same model after `fusec export` to
ONNX and back (tests/cli/test_onnx_export.sh). Inputs, outputs, symbols,
nodes (order, name, op, inputs, outputs, attributes), value_info (dtype and
shape of every node output) and initializers (dtype, shape and data, the
JSON side's external ones read from its safetensors file) must match.

usage: /usr/bin/python3 compare_graphs.py A.json B.json
Exit 0 when equal, else 1 with the first differences on stderr."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import safetensors_np  # noqa: E402

NP = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def onnx_weights(path):
    """The initializers of an ONNX model (a graph read from ONNX names the
    .onnx file as its weights), external data loaded by python3-onnx."""
    import onnx
    from onnx import numpy_helper
    out = {}
    for t in onnx.load(path).graph.initializer:
        if t.data_type == onnx.TensorProto.BFLOAT16:
            out[t.name] = safetensors_np.BF16(np.frombuffer(t.raw_data, dtype=np.uint16))
        else:
            out[t.name] = numpy_helper.to_array(t)
    return out


def initializers(path, model):
    weights = {}
    if model.get("weights"):
        wpath = model["weights"]
        if not os.path.isabs(wpath):
            wpath = os.path.join(os.path.dirname(path), wpath)
        weights = onnx_weights(wpath) if wpath.endswith(".onnx") else safetensors_np.read(wpath)
    out = {}
    for t in model.get("initializers", []):
        if "data" in t:
            if t["dtype"] == "bfloat16":
                data = np.asarray(t["data"], dtype=np.float32)
            else:
                data = np.asarray(t["data"], dtype=NP[t["dtype"]])
        else:
            w = weights[t["name"]]
            data = safetensors_np.bf16_bits_to_f32(w.bits) if isinstance(w, safetensors_np.BF16) else np.asarray(w)
        out[t["name"]] = (t["dtype"], t["shape"], np.asarray(data).reshape(-1))
    return out


def constants_as_initializers(model):
    """ONNX Constant nodes are read back as constant values (ir/onnx_read.c):
    compare a Constant node as the initializer it becomes."""
    keep = []
    for n in model["nodes"]:
        if n["op"] != "Constant":
            keep.append(n)
            continue
        (key, v), = n["attrs"].items()
        if key == "value":
            t = {"dtype": v["dtype"], "shape": v["shape"], "data": v["data"]}
        elif key in ("value_float", "value_int"):
            t = {"dtype": "float32" if key == "value_float" else "int64", "shape": [], "data": v}
        else:
            t = {"dtype": "float32" if key == "value_floats" else "int64", "shape": [len(v)], "data": v}
        t["name"] = n["outputs"][0]
        model.setdefault("initializers", []).append(t)
        model["value_info"] = [x for x in model.get("value_info", []) if x["name"] != t["name"]]
    model["nodes"] = keep


def norm_attr(v):
    if isinstance(v, float):
        return float(np.float32(v))   # ONNX attributes are float32
    if isinstance(v, list):
        return [norm_attr(x) for x in v]
    if isinstance(v, dict):
        return {k: norm_attr(x) for k, x in v.items()}
    return v


def nodes(model):
    return [(n["name"], n["op"], n.get("inputs", []), n.get("outputs", []),
             {k: norm_attr(v) for k, v in (n.get("attrs") or {}).items()}) for n in model["nodes"]]


def main():
    pa, pb = sys.argv[1], sys.argv[2]
    a, b = json.load(open(pa)), json.load(open(pb))
    constants_as_initializers(a)
    constants_as_initializers(b)
    diffs = []
    for key in ("inputs", "symbols"):
        if a.get(key) != b.get(key):
            diffs.append("%s: %r != %r" % (key, a.get(key), b.get(key)))
    if [o["name"] for o in a["outputs"]] != [o["name"] for o in b["outputs"]]:
        diffs.append("outputs differ")
    na, nb = nodes(a), nodes(b)
    if len(na) != len(nb):
        diffs.append("%d nodes != %d nodes" % (len(na), len(nb)))
    for x, y in zip(na, nb):
        if x != y:
            diffs.append("node %r != %r" % (x, y))
    via = {v["name"]: json.dumps([v.get("dtype"), v.get("shape")]) for v in a.get("value_info", [])}
    vib = {v["name"]: json.dumps([v.get("dtype"), v.get("shape")]) for v in b.get("value_info", [])}
    if via != vib:
        diffs.append("value_info differs: %r" % sorted(set(via.items()) ^ set(vib.items()))[:4])
    ia, ib = initializers(pa, a), initializers(pb, b)
    if sorted(ia) != sorted(ib):
        diffs.append("initializers %r != %r" % (sorted(set(ia) - set(ib)), sorted(set(ib) - set(ia))))
    for name in sorted(set(ia) & set(ib)):
        (da, sa, xa), (db, sb, xb) = ia[name], ib[name]
        if da != db or sa != sb:
            diffs.append("initializer %s: %s %s != %s %s" % (name, da, sa, db, sb))
        elif xa.shape != xb.shape or not np.array_equal(xa, xb, equal_nan=xa.dtype.kind == "f"):
            diffs.append("initializer %s: data differs" % name)
    if diffs:
        sys.stderr.write("\n".join(diffs[:6]) + "\n")
        sys.exit(1)


main()
