"""The Python package (python/fusec) over build/libfusec.so: runs under Debian's
/usr/bin/python3 (numpy). Golden outputs are the committed numpy references of
fixtures/; nothing is compared with fusec's own output except where two of
fusec's paths must agree (a compiled library and the JIT).

Usage: /usr/bin/python3 tests/python/test_fusec.py BUILD_DIR"""
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
os.environ["FUSEC_LIBRARY"] = os.path.join(BUILD, "libfusec.so")
sys.path.insert(0, os.path.join(ROOT, "python"))
import fusec  # noqa: E402

Q = os.path.join(ROOT, "fixtures", "qwen3_small")
ONNX = os.path.join(ROOT, "fixtures", "onnx")
TMP = tempfile.mkdtemp(prefix="fusec_py_")


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


def rel_err(got, want):
    return float(np.max(np.abs(got.astype(np.float64) - want)) / max(1.0, float(np.max(np.abs(want)))))


class TestFusec(unittest.TestCase):
    def test_load_and_run_matches_numpy(self):
        for backend in ("jit", "aot"):
            with fusec.load(os.path.join(Q, "model.json"), backend=backend, cache_dir=TMP) as m:
                self.assertEqual(m.inputs, [("input_ids", np.dtype(np.int64), "[1, seq]")])
                self.assertEqual(m.symbols, {"seq": 32})
                for n in (5, 17):
                    out = m.run(input_ids=np.load(os.path.join(Q, f"input_ids_{n}.npy")))
                    want = np.load(os.path.join(Q, f"expected_logits_{n}.npy"))
                    self.assertEqual(out["logits"].shape, want.shape)
                    self.assertLess(rel_err(out["logits"], want), 1e-4, (backend, n))

    def test_outputs_outlive_the_next_run(self):
        m = fusec.load(os.path.join(Q, "model.json"))
        a = m.run(input_ids=np.load(os.path.join(Q, "input_ids_5.npy")))["logits"].copy()
        first = m.run(input_ids=np.load(os.path.join(Q, "input_ids_5.npy")))["logits"]
        m.run(input_ids=np.load(os.path.join(Q, "input_ids_1.npy")))
        np.testing.assert_array_equal(first, a)

    def test_two_models_in_one_process(self):
        q = fusec.load(os.path.join(Q, "model.json"))
        mlp = fusec.load(os.path.join(ONNX, "mlp_raw", "model.onnx"))
        x = np.load(os.path.join(ONNX, "mlp_raw", "x.npy"))
        for _ in range(2):
            y = mlp.run(x=x)["y"]
            logits = q.run(input_ids=np.load(os.path.join(Q, "input_ids_5.npy")))["logits"]
            self.assertLess(rel_err(y, np.load(os.path.join(ONNX, "mlp_raw", "expected_y.npy"))), 1e-5)
            self.assertLess(rel_err(logits, np.load(os.path.join(Q, "expected_logits_5.npy"))), 1e-4)
        q.close()
        mlp.close()

    def test_onnx_with_bounds_and_known_inputs(self):
        d = os.path.join(ONNX, "dim_param")
        m = fusec.load(os.path.join(d, "model.onnx"), max={"seq": 8})
        self.assertEqual(m.symbols, {"seq": 8})
        self.assertLess(rel_err(m.run(x=np.load(os.path.join(d, "x.npy")))["y"],
                                np.load(os.path.join(d, "expected_y.npy"))), 1e-5)
        d = os.path.join(ONNX, "specialize")
        known = {k: np.load(os.path.join(d, k + ".npy")) for k in ("shape", "starts", "ends")}
        m = fusec.load(os.path.join(d, "model.onnx"), known_inputs=known)
        self.assertTrue(m.compiled_in("shape"))
        self.assertFalse(m.compiled_in("x"))
        y = m.run(x=np.load(os.path.join(d, "x.npy")), **known)["y"]
        self.assertLess(rel_err(y, np.load(os.path.join(d, "expected_y.npy"))), 1e-5)

    def test_an_input_folded_away_is_still_compiled_in(self):
        import onnx
        from onnx import TensorProto, helper
        g = helper.make_graph([helper.make_node("ConstantOfShape", ["shape"], ["y"])], "g",
                              [helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 8
        path = os.path.join(TMP, "cos.onnx")
        onnx.save(model, path)
        m = fusec.load(path, known_inputs={"shape": np.array([2, 3], np.int64)})
        self.assertEqual(m.inputs, [])
        self.assertTrue(m.compiled_in("shape"))   # its constant folded into y: still named
        np.testing.assert_array_equal(m.run(shape=np.array([2, 3], np.int64))["y"], np.zeros((2, 3), np.float32))

    def test_compile_then_load_the_library(self):
        lib = os.path.join(TMP, "libq.so")
        fusec.compile(os.path.join(Q, "model.json"), lib, embed_weights=True)
        self.assertTrue(os.path.exists(lib))
        m = fusec.load(lib)
        out = m.run(input_ids=np.load(os.path.join(Q, "input_ids_17.npy")))["logits"]
        self.assertLess(rel_err(out, np.load(os.path.join(Q, "expected_logits_17.npy"))), 1e-4)

    def test_errors_raise_with_fusec_messages(self):
        with self.assertRaisesRegex(fusec.Error, "nope.json: cannot open model"):
            fusec.load(os.path.join(TMP, "nope.json"))
        with self.assertRaisesRegex(fusec.Error, "unknown profile 'turbo'"):
            fusec.load(os.path.join(Q, "model.json"), profile="turbo")
        m = fusec.load(os.path.join(Q, "model.json"))
        with self.assertRaisesRegex(fusec.Error, "no input named 'ids'"):
            m.run(ids=np.zeros((1, 3), np.int64))
        with self.assertRaisesRegex(fusec.Error, "seq"):
            m.run(input_ids=np.zeros((1, 40), np.int64))   # past the bound 32
        with self.assertRaisesRegex(fusec.Error, "dim_param/model.onnx.*'seq'.*no upper bound"):
            fusec.load(os.path.join(ONNX, "dim_param", "model.onnx"))
        with self.assertRaisesRegex(fusec.Error, "whose values decide shapes"):
            fusec.compile(os.path.join(ONNX, "specialize", "model.onnx"), os.path.join(TMP, "libsp.so"))
        self.assertFalse(os.path.exists(os.path.join(TMP, "libsp.so")))

    def test_version(self):
        self.assertRegex(fusec.version(), r"^\d+\.\d+\.\d+$")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
