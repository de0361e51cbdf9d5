"""The ``cuda`` backend's tiled matrix product (:mod:`kinn_ref.backends.cuda_backend.linalg.gemm`) against NumPy.

Every operand layout (row- or column-major ``a`` and ``b``), wide and narrow tiles, split reductions, batches
and ``alpha``/``beta``; on the simulator with its small tiles, so that edge tiles and several blocks run.
"""
import numpy as np
import pytest

import kinn_ref as kr

pytestmark = pytest.mark.skipif("cuda" not in kr.available_backends(),
                                reason="cuda backend not usable here (no GPU, no simulator)")


def _device(a):
    from numba import cuda
    return cuda.to_device(np.ascontiguousarray(a))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("a_transposed", [False, True])
@pytest.mark.parametrize("b_transposed", [False, True])
@pytest.mark.parametrize("M,KD,N", [(5, 7, 9), (9, 6, 2), (3, 11, 1)])  # wide, narrow and single-column outputs
def test_gemm_matches_numpy(dtype, a_transposed, b_transposed, M, KD, N):
    from kinn_ref.backends.cuda_backend.linalg import gemm
    rng = np.random.default_rng(M * 100 + KD * 10 + N)
    a = rng.standard_normal((M, KD)).astype(dtype)
    b = rng.standard_normal((KD, N)).astype(dtype)
    c = rng.standard_normal((M, N)).astype(dtype)
    # a transposed operand is the transpose view of a contiguous array of the other shape
    A = gemm.matrices(_device(a.T)).T if a_transposed else gemm.matrices(_device(a))
    B = gemm.matrices(_device(b.T)).T if b_transposed else gemm.matrices(_device(b))
    dc = _device(c)
    gemm.gemm(A, B, gemm.matrices(dc), alpha=0.5, beta=2.0)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(dc.copy_to_host(), 0.5 * a.astype(np.float64) @ b + 2.0 * c, rtol=tol, atol=tol)


@pytest.mark.parametrize("narrow", [False, True])
def test_gemm_batched_and_split(narrow):
    from kinn_ref.backends.cuda_backend.linalg import gemm
    from kinn_ref.backends.cuda_backend.runtime.device import empty, fill
    rng = np.random.default_rng(3)
    Z, M, KD = 3, 6, 13
    N = 1 if narrow else 7
    a = rng.standard_normal((Z, M, KD))
    b = rng.standard_normal((Z, KD, N))
    out = _device(np.zeros((Z, M, N)))
    gemm.gemm(gemm.matrices(_device(a)), gemm.matrices(_device(b)), gemm.matrices(out), batch=Z)
    np.testing.assert_allclose(out.copy_to_host(), a @ b, rtol=1e-12, atol=1e-12)
    nsplit = 3  # one product, its reduction split into chunks accumulated into slices, summed in order
    parts = fill(empty((nsplit, M, N), np.float64), 0.0)
    used = gemm.gemm(gemm.matrices(_device(a[0])), gemm.matrices(_device(b[0])), gemm.matrices(parts), beta=1.0,
                     nsplit=nsplit, split_stride=M * N)
    assert 1 <= used <= nsplit
    total = gemm.sum_splits(parts[:used], empty((M, N), np.float64))
    np.testing.assert_allclose(total.copy_to_host(), a[0] @ b[0], rtol=1e-12, atol=1e-12)


def test_gemm_rejects_mismatched_shapes():
    from kinn_ref.backends.cuda_backend.linalg import gemm
    a, b = gemm.matrices(_device(np.ones((2, 3)))), gemm.matrices(_device(np.ones((4, 2))))
    with pytest.raises(ValueError, match="shapes do not agree"):
        gemm.gemm(a, b, gemm.matrices(_device(np.ones((2, 2)))))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("R,D,H", [(37, 3, 5), (18, 1, 4), (50, 8, 3), (6, 2, 1)])
def test_thin_projection_matches_numpy(dtype, R, D, H):
    """Input projections with few features run on the thin kernels: several row tiles and column chunks, a
    partial last tile, and (with the simulator's 4 x 2 tiles) more channels than one chunk."""
    from kinn_ref.backends.cuda_backend.linalg import projection
    assert projection._thin(R, D, np.dtype(dtype)) is not None
    rng = np.random.default_rng(R + 10 * D + 100 * H)
    x = rng.standard_normal((R, D)).astype(dtype)
    W = rng.standard_normal((H, D)).astype(dtype)
    b = rng.standard_normal(H).astype(dtype)
    dI = rng.standard_normal((R, H)).astype(dtype)
    I = projection.project(_device(x), _device(W), _device(b)).copy_to_host()
    dW, db, dx = (a.copy_to_host() for a in projection.project_vjp(_device(x), _device(W), _device(dI)))
    x64, W64, dI64 = (a.astype(np.float64) for a in (x, W, dI))
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for got, want in ((I, x64 @ W64.T + b), (dW, dI64.T @ x64), (db, dI64.sum(0)), (dx, dI64 @ W64)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_wide_projection_takes_the_tiled_product(monkeypatch):
    """Above PROJECTION_THIN_MAX_D features the projection is a tiled product."""
    from kinn_ref.backends.cuda_backend.runtime import config
    from kinn_ref.backends.cuda_backend.linalg import projection
    assert projection._thin(10, config.PROJECTION_THIN_MAX_D + 1, np.dtype(np.float64)) is None
    monkeypatch.setattr(config, "PROJECTION_THIN_MAX_D", 1)
    assert projection._thin(10, 2, np.dtype(np.float64)) is None
    rng = np.random.default_rng(0)
    x, W, b, dI = (rng.standard_normal(s) for s in ((9, 2), (4, 2), (4,), (9, 4)))
    I = projection.project(_device(x), _device(W), _device(b)).copy_to_host()
    dW, db, dx = (a.copy_to_host() for a in projection.project_vjp(_device(x), _device(W), _device(dI)))
    for got, want in ((I, x @ W.T + b), (dW, dI.T @ x), (db, dI.sum(0)), (dx, dI @ W)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
