"""The cuBLAS path of the cuda backend's matrix products (:mod:`kinn_ref.backends.cuda_backend.linalg.cublas`).

Without a GPU, the translation of a strided, batched, row-major :class:`Operand` product into one column-major
``gemmStridedBatched`` call is checked against a NumPy emulation of that cuBLAS call, which reads the operands
through the raw pointers, leading dimensions and batch strides it is given. On a GPU with CuPy the same
products, and whole dense layers, are compared between cuBLAS and the tiled kernel.
"""
import ctypes
import itertools

import numpy as np
import pytest

from kinn_ref.backends.cuda_backend.linalg import cublas
from kinn_ref.backends.cuda_backend.linalg.gemm import Operand
from kinn_ref.backends.cuda_backend.runtime import config
from kinn_ref.backends.cuda_backend.runtime.compat import simulator_active


class HostBuffer:
    """A flat host array posing as a device array (its address is the 'device pointer')."""

    def __init__(self, values):
        self.values = np.ascontiguousarray(values).reshape(-1)
        self.dtype = self.values.dtype
        self.__cuda_array_interface__ = {"data": (self.values.ctypes.data, False)}


class EmulatedCublas:
    """``cublas<S|D>gemmStridedBatched`` in NumPy, column-major, reading memory through the pointers."""

    def __init__(self, buffers):
        self.buffers = buffers
        self.calls = 0

    def _locate(self, ptr, itemsize):
        for buf in self.buffers:
            start = buf.values.ctypes.data
            if start <= ptr < start + buf.values.nbytes:
                assert (ptr - start) % itemsize == 0
                return buf.values, (ptr - start) // itemsize
        raise AssertionError(f"pointer {ptr:#x} is in no operand")

    @staticmethod
    def _scalar(ptr, ctype):
        return ctype.from_address(ptr).value

    def _gemm(self, ctype, handle, opa, opb, m, n, k, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch):
        self.calls += 1
        size = ctypes.sizeof(ctype)
        a_buf, a0 = self._locate(A, size)
        b_buf, b0 = self._locate(B, size)
        c_buf, c0 = self._locate(C, size)
        i, l_, j = np.arange(m)[:, None], np.arange(k)[None, :], np.arange(n)[None, :]
        for z in range(batch):
            # op(A) is m x k: stored column-major with leading dimension lda (transposed when opa == 1)
            ia = a0 + z * sA + (i + l_ * lda if opa == 0 else l_ + i * lda)
            ib = b0 + z * sB + (np.arange(k)[:, None] + j * ldb if opb == 0 else j + np.arange(k)[:, None] * ldb)
            ic = c0 + z * sC + i + j * ldc
            for idx, buf, size_ in ((ia, a_buf, m * k), (ib, b_buf, k * n), (ic, c_buf, m * n)):
                assert size_ == 0 or (idx.min() >= 0 and idx.max() < buf.size), "read outside the operand"
            c_buf[ic] = self._scalar(alpha, ctype) * (a_buf[ia] @ b_buf[ib]) + self._scalar(beta, ctype) * c_buf[ic]

    def sgemmStridedBatched(self, *args):
        self._gemm(ctypes.c_float, *args)

    def dgemmStridedBatched(self, *args):
        self._gemm(ctypes.c_double, *args)


def operand_values(op, batch):
    """The (batch, rows, cols) values an Operand views."""
    z, i, j = np.ogrid[:batch, :op.rows, :op.cols]
    return op.data.values[op.offset + z * op.batch_stride + i * op.row_stride + j * op.col_stride]


def layout(rng, buffers, rows, cols, batch, kind, dtype):
    """An Operand of the given layout kind over a fresh buffer with padding around it."""
    pad = int(rng.integers(0, 3))
    if kind == "row":            # row-major, rows padded to a wider stride
        rs, cs = cols + pad, 1
    elif kind == "col":          # column-major (a transposed row-major view)
        rs, cs = 1, rows + pad
    else:
        raise ValueError(kind)
    per = rows * rs if kind == "row" else cols * cs
    shared = kind == "row" and rng.random() < 0.3 and batch > 1
    bs = 0 if shared else per + int(rng.integers(0, 3))
    offset = int(rng.integers(0, 4))
    size = offset + (batch - 1) * bs + per + pad + 1
    buf = HostBuffer(rng.standard_normal(size).astype(dtype))
    buffers.append(buf)
    return Operand(buf, offset, bs, rs, cs, rows, cols)


@pytest.fixture
def emulated(monkeypatch):
    buffers = []
    lib = EmulatedCublas(buffers)
    monkeypatch.setattr(cublas, "_STATE", {"why": None, "lib": lib, "handle": 0})
    monkeypatch.setattr(config, "GEMM_LIBRARY", "auto")
    return lib, buffers


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kinds", list(itertools.product(("row", "col"), repeat=3)))
def test_every_unit_stride_layout_maps_to_one_strided_batched_call(emulated, dtype, kinds):
    lib, buffers = emulated
    rng = np.random.default_rng(hash(kinds) % 2**32)
    for M, KD, N, batch in [(3, 5, 4, 1), (1, 4, 3, 2), (4, 1, 2, 3), (5, 3, 1, 2), (2, 2, 2, 4)]:
        a = layout(rng, buffers, M, KD, batch, kinds[0], dtype)
        b = layout(rng, buffers, KD, N, batch, kinds[1], dtype)
        c = layout(rng, buffers, M, N, batch, kinds[2], dtype)
        if c.batch_stride == 0:
            continue                      # a shared output would be written by every batch member
        alpha, beta = float(rng.standard_normal()), float(rng.standard_normal())
        want = alpha * operand_values(a, batch) @ operand_values(b, batch) + beta * operand_values(c, batch)
        calls = lib.calls
        assert cublas.gemm(a, b, c, alpha, beta, batch)
        assert lib.calls == calls + 1
        tol = 1e-12 if dtype == np.float64 else 2e-5
        np.testing.assert_allclose(operand_values(c, batch), want, rtol=tol, atol=tol)


def test_layouts_without_a_unit_stride_are_left_to_the_tiled_kernel(emulated):
    lib, buffers = emulated
    buf = HostBuffer(np.arange(100.0))
    buffers.append(buf)
    strided = Operand(buf, 0, 0, 6, 2, 3, 3)      # neither stride is 1
    plain = Operand(buf, 50, 0, 3, 1, 3, 3)
    assert not cublas.gemm(strided, plain, Operand(buf, 80, 0, 3, 1, 3, 3), 1.0, 0.0, 1)
    assert not cublas.gemm(plain, plain, Operand(buf, 80, 0, 6, 2, 3, 3), 1.0, 0.0, 1)
    assert lib.calls == 0


def test_gemm_library_setting_is_checked(monkeypatch):
    monkeypatch.setattr(config, "GEMM_LIBRARY", "mkl")
    with pytest.raises(ValueError, match="GEMM_LIBRARY.*'auto', 'cublas' or 'own'.*'mkl'"):
        cublas.active()
    monkeypatch.setattr(config, "GEMM_LIBRARY", "own")
    assert not cublas.active()


def test_asking_for_cublas_where_it_cannot_run_says_why(monkeypatch):
    monkeypatch.setattr(cublas, "_STATE", {"why": "CuPy's cuBLAS is not importable"})
    monkeypatch.setattr(config, "GEMM_LIBRARY", "auto")
    assert not cublas.active()
    monkeypatch.setattr(config, "GEMM_LIBRARY", "cublas")
    with pytest.raises(RuntimeError, match="not importable"):
        cublas.active()


def test_the_simulator_uses_the_tiled_kernel():
    if not simulator_active():
        pytest.skip("runs under the CUDA simulator")
    assert cublas.unavailable() == "the CUDA simulator has no cuBLAS"


def _real_cublas():
    if simulator_active():
        pytest.skip("needs a GPU, not the simulator")
    try:
        from numba import cuda
        if not cuda.is_available():
            pytest.skip("no GPU")
    except Exception:
        pytest.skip("no GPU")
    why = cublas.unavailable()
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cublas_and_the_tiled_kernel_agree_on_the_device(dtype, monkeypatch):
    _real_cublas()
    from numba import cuda
    from kinn_ref.backends.cuda_backend.linalg import gemm as mm
    rng = np.random.default_rng(1)
    for M, KD, N, batch in [(64, 300, 48, 1), (257, 129, 65, 3), (7, 2048, 5, 2)]:
        a = rng.standard_normal((batch, M, KD)).astype(dtype)
        b = rng.standard_normal((batch, N, KD)).astype(dtype)      # used transposed
        c0 = rng.standard_normal((batch, M, N)).astype(dtype)
        out = {}
        for library in ("own", "cublas"):
            monkeypatch.setattr(config, "GEMM_LIBRARY", library)
            c = cuda.to_device(c0)
            mm.gemm(mm.matrices(cuda.to_device(a)), mm.matrices(cuda.to_device(b)).T, mm.matrices(c), alpha=0.5,
                    beta=2.0, batch=batch)
            out[library] = c.copy_to_host()
        want = 0.5 * a.astype(np.float64) @ b.astype(np.float64).transpose(0, 2, 1) + 2.0 * c0
        tol = 1e-12 if dtype == np.float64 else 1e-4
        for library, got in out.items():
            assert np.abs(got - want).max() <= tol * np.abs(want).max(), library


@pytest.mark.parametrize("integrator", ["expeuler", "implicit", "rk4", "trapezoidal"])
def test_dense_layers_agree_between_cublas_and_the_tiled_kernel(integrator, monkeypatch):
    _real_cublas()
    import kinn_ref as kr
    from helpers import make_case
    spec, params, x, V0 = make_case("dense", integrator, "last", order=2, dtype=np.float64, batch=300,
                                    n_steps=5, n_nodes=130)
    results = {}
    for library in ("own", "cublas"):
        monkeypatch.setattr(config, "GEMM_LIBRARY", library)
        y, tape = kr.forward(spec, params, x, V0, backend="cuda")
        grads = kr.backward(spec, params, tape, np.ones_like(y))
        results[library] = (y, grads)
    (y0, g0), (y1, g1) = results["own"], results["cublas"]
    np.testing.assert_allclose(y1, y0, rtol=1e-11, atol=1e-12)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-10, atol=1e-11, err_msg=name)
