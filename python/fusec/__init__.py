"""fusec from Python: load a model (JSON IR, ONNX, or a compiled library), run it on numpy
arrays, compile a model into a shared library.

    import fusec, numpy as np
    m = fusec.load("model.onnx", profile="fast", backend="jit", max={"seq": 64})
    out = m.run(input_ids=np.array([[1, 2, 3]], np.int64))   # {"logits": array(...)}
    fusec.compile("model.onnx", "libmodel.so", max={"seq": 64})

Pure Python over libfusec.so (the C API, api/fusec.h) with ctypes and numpy. Errors raise
fusec.Error carrying fusec's message. The library is found from $FUSEC_LIBRARY, beside an
installed package (PREFIX/lib), in the source tree's build/, or on the linker's path.
"""
import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Error", "Model", "load", "compile", "version"]

_ERR_LEN = 4096
_MAX_RANK = 8


class Error(Exception):
    """A failure reported by fusec; str(e) is fusec's message."""


# fusec_dtype (api/fusec.h) <-> numpy
_DTYPES = {1: np.dtype(np.float32), 2: np.dtype(np.float16), 4: np.dtype(np.int64),
           5: np.dtype(np.int32), 6: np.dtype(np.bool_)}
_BFLOAT16 = 3
_CODES = {v: k for k, v in _DTYPES.items()}


class _Tensor(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("data", ctypes.c_void_p)]


class _Options(ctypes.Structure):
    _fields_ = [("profile", ctypes.c_char_p), ("backend", ctypes.c_char_p), ("cache_dir", ctypes.c_char_p),
                ("verbose", ctypes.c_int), ("precision", ctypes.c_char_p),
                ("allow_external_weights", ctypes.c_int), ("sym_max", ctypes.c_char_p),
                ("known_inputs", ctypes.POINTER(_Tensor)), ("n_known_inputs", ctypes.c_int),
                ("weights", ctypes.c_char_p)]


def _find_library():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("FUSEC_LIBRARY")]
    # PREFIX/lib/python3/dist-packages/fusec -> PREFIX/lib; the source tree's python/fusec -> build/
    for up in (os.path.join(here, "..", "..", ".."), os.path.join(here, "..", "..", "build")):
        for name in ("libfusec.so.0", "libfusec.so"):
            candidates.append(os.path.join(up, name))
    candidates.append(ctypes.util.find_library("fusec"))
    for c in candidates:
        if c and (os.path.exists(c) or not os.path.isabs(c)):
            try:
                return ctypes.CDLL(c)
            except OSError:
                continue
    raise Error("libfusec.so not found: set FUSEC_LIBRARY, install fusec (make install), or build it (make)")


_lib = _find_library()
_p = ctypes.c_void_p
_lib.fusec_load.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.c_char_p, ctypes.c_size_t]
_lib.fusec_load.restype = _p
_lib.fusec_free.argtypes = [_p]
_lib.fusec_compile.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                               ctypes.POINTER(_Options), ctypes.c_char_p, ctypes.c_size_t]
for _name in ("fusec_num_inputs", "fusec_num_outputs", "fusec_num_symbols"):
    getattr(_lib, _name).argtypes = [_p]
for _name in ("fusec_input_name", "fusec_output_name", "fusec_symbol_name"):
    getattr(_lib, _name).argtypes = [_p, ctypes.c_int]
    getattr(_lib, _name).restype = ctypes.c_char_p
for _name in ("fusec_input_dtype", "fusec_output_dtype"):
    getattr(_lib, _name).argtypes = [_p, ctypes.c_int]
for _name in ("fusec_input_shape", "fusec_output_shape"):
    getattr(_lib, _name).argtypes = [_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                     ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_size_t]
_lib.fusec_symbol_max.argtypes = [_p, ctypes.c_int]
_lib.fusec_symbol_max.restype = ctypes.c_int64
_lib.fusec_set_input.argtypes = [_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p]
_lib.fusec_run.argtypes = [_p]
_lib.fusec_get_output.argtypes = [_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int),
                                  ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_void_p)]
_lib.fusec_last_error.argtypes = [_p]
_lib.fusec_last_error.restype = ctypes.c_char_p
_lib.fusec_input_compiled_in.argtypes = [_p, ctypes.c_char_p]


def _b(s):
    return None if s is None else os.fsencode(s) if isinstance(s, os.PathLike) else str(s).encode()


def _options(profile, backend, precision, cache_dir, weights, max, known_inputs, allow_external_weights, keep):
    o = _Options()
    o.profile, o.backend, o.precision = _b(profile), _b(backend), _b(precision)
    o.cache_dir, o.weights = _b(cache_dir), _b(weights)
    o.allow_external_weights = int(bool(allow_external_weights))
    if max:
        o.sym_max = ",".join(f"{k}={int(v)}" for k, v in max.items()).encode()
    known = list((known_inputs or {}).items())
    if known:
        arr = (_Tensor * len(known))()
        for t, (name, value) in zip(arr, known):
            a = np.ascontiguousarray(value)
            if a.dtype not in _CODES:
                raise Error(f"known input '{name}': dtype {a.dtype} is not supported")
            shape = (ctypes.c_int64 * _MAX_RANK)(*a.shape)
            keep += [a, shape]
            t.name, t.dtype, t.rank = _b(name), _CODES[a.dtype], a.ndim
            t.shape, t.data = shape, a.ctypes.data
        keep.append(arr)
        o.known_inputs, o.n_known_inputs = arr, len(known)
    return o


class Model:
    """A loaded model: its inputs and outputs (name, numpy dtype, shape with symbol names),
    symbols and their bounds, and run()."""

    def __init__(self, handle, path):
        self._h = handle
        self.path = path
        self.inputs = [self._tensor_info(i, True) for i in range(_lib.fusec_num_inputs(handle))]
        self.outputs = [self._tensor_info(i, False) for i in range(_lib.fusec_num_outputs(handle))]
        self.symbols = {_lib.fusec_symbol_name(handle, i).decode(): _lib.fusec_symbol_max(handle, i)
                        for i in range(_lib.fusec_num_symbols(handle))}

    def _tensor_info(self, i, is_input):
        name = (_lib.fusec_input_name if is_input else _lib.fusec_output_name)(self._h, i).decode()
        code = (_lib.fusec_input_dtype if is_input else _lib.fusec_output_dtype)(self._h, i)
        text = ctypes.create_string_buffer(512)
        (_lib.fusec_input_shape if is_input else _lib.fusec_output_shape)(self._h, i, None, None, text, 512)
        return name, _DTYPES.get(code, "bfloat16"), text.value.decode()

    def compiled_in(self, name):
        """True when input `name` was compiled in with a known value."""
        return bool(_lib.fusec_input_compiled_in(self._h, _b(name)))

    def _fail(self):
        raise Error(_lib.fusec_last_error(self._h).decode())

    def run(self, **inputs):
        """Runs the model on numpy arrays (converted to each input's dtype) and returns
        {output name: numpy array}, copies that outlive the next run."""
        if self._h is None:
            raise Error(f"{self.path}: the model was closed")
        want = {name: dtype for name, dtype, _ in self.inputs}
        keep = []
        for name, value in inputs.items():
            if name not in want:
                if self.compiled_in(name):
                    continue
                raise Error(f"{self.path}: the model has no input named '{name}'")
            if want[name] == "bfloat16":
                raise Error(f"{self.path}: input '{name}' is bfloat16, which numpy cannot hold")
            a = np.ascontiguousarray(value, dtype=want[name])
            shape = (ctypes.c_int64 * _MAX_RANK)(*a.shape)
            keep += [a, shape]
            if _lib.fusec_set_input(self._h, _b(name), _CODES[a.dtype], a.ndim, shape, a.ctypes.data):
                self._fail()
        if _lib.fusec_run(self._h):
            self._fail()
        out = {}
        for name, _, _ in self.outputs:
            code, rank, shape, data = ctypes.c_int(), ctypes.c_int(), (ctypes.c_int64 * _MAX_RANK)(), ctypes.c_void_p()
            if _lib.fusec_get_output(self._h, _b(name), ctypes.byref(code), ctypes.byref(rank), shape,
                                     ctypes.byref(data)):
                self._fail()
            dims = tuple(shape[k] for k in range(rank.value))
            if code.value == _BFLOAT16:   # widened to float32: bits << 16
                n = int(np.prod(dims)) if dims else 1
                raw = np.ctypeslib.as_array((ctypes.c_uint16 * n).from_address(data.value))
                out[name] = (raw.astype(np.uint32) << 16).view(np.float32).reshape(dims)
                continue
            dt = _DTYPES[code.value]
            n = (int(np.prod(dims)) if dims else 1) * dt.itemsize
            buf = (ctypes.c_char * n).from_address(data.value) if n else b""
            out[name] = np.frombuffer(bytes(buf), dtype=dt).reshape(dims)
        return out

    def close(self):
        if self._h is not None:
            _lib.fusec_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


def load(path, profile="fast", backend="jit", precision=None, cache_dir=None, weights=None, max=None,
         known_inputs=None, allow_external_weights=False):
    """Loads a model: a JSON IR or ONNX file (compiled by libtcc, or by gcc into the build
    cache with backend="aot") or a library made by fusec compile. max bounds symbolic dims
    ({"seq": 64}); known_inputs {name: array} compiles in inputs whose values decide shapes;
    weights names a compiled library's weights file."""
    keep = []
    o = _options(profile, backend, precision, cache_dir, weights, max, known_inputs, allow_external_weights, keep)
    err = ctypes.create_string_buffer(_ERR_LEN)
    h = _lib.fusec_load(_b(path), ctypes.byref(o), err, _ERR_LEN)
    if not h:
        raise Error(err.value.decode())
    return Model(h, str(path))


def compile(path, library, header=None, profile="fast", precision=None, max=None, specialize=None,
            embed_weights=False, allow_external_weights=False):
    """Compiles a model into the shared library `library` (as `fusec compile`); specialize
    {name: array} compiles inputs in; embed_weights puts the weights in the library."""
    keep = []
    o = _options(profile, None, precision, None, None, max, specialize, allow_external_weights, keep)
    err = ctypes.create_string_buffer(_ERR_LEN)
    if _lib.fusec_compile(_b(path), _b(library), _b(header), int(bool(embed_weights)), ctypes.byref(o), err,
                          _ERR_LEN):
        raise Error(err.value.decode())


def version():
    """The version of libfusec.so ("0.10.0")."""
    f = getattr(_lib, "fusec_version", None)
    if f is None:
        return None
    f.restype = ctypes.c_char_p
    return f().decode()
