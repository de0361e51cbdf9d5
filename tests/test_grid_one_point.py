"""Grids with an axis of one point (``grid_shape=(1,)``, ``(1, P)``, ``(P, 1)``) on the compiled backends: the
same values and gradients as the reference for every boundary (the golden suite's ``edge`` tier has the
exact values)."""
import itertools
import zlib

import numpy as np
import pytest

import kinn_ref as kr
from helpers import CUDA_TOLERANCE, assert_close, default_kernel, random_params

SHAPES = ((1,), (1, 3), (3, 1))
BOUNDARIES = ("periodic", "neumann", "dirichlet")
INTEGRATORS = ("euler", "expeuler", "implicit", "rk4")


def _case(shape, boundary, integrator, readout, dtype):
    rng = np.random.default_rng(zlib.crc32(repr((shape, boundary, integrator)).encode()))
    spec = kr.LayerSpec(2, 2, order=2, integrator=integrator, readout=readout, dt=0.1, n_steps=3,
                        coupling="grid", grid_shape=shape, boundary=boundary)
    params = random_params(spec, rng, dtype)
    x = rng.standard_normal(spec.input_shape(2, None)).astype(dtype)
    return spec, params, x


def _check(backend, spec, params, x, rtol=None):
    y0, tape0 = kr.forward(spec, params, x, backend="numpy")
    dy = np.random.default_rng(5).standard_normal(y0.shape).astype(y0.dtype)
    expected = kr.backward(spec, params, tape0, dy)
    y, tape = kr.forward(spec, params, x, backend=backend)
    assert_close(y, y0, rtol=rtol, dtype=y0.dtype, what="y")
    grads = kr.backward(spec, params, tape, dy)
    for k in expected:
        assert_close(grads[k], expected[k], rtol=rtol, dtype=y0.dtype, what=k)


@pytest.mark.parametrize("shape,boundary,integrator", list(itertools.product(SHAPES, BOUNDARIES, INTEGRATORS)))
def test_numba_matches_reference(shape, boundary, integrator):
    readout, dtype = default_kernel(integrator, "grid")        # kernels the default suite compiles anyway
    spec, params, x = _case(shape, boundary, integrator, readout, dtype.type)
    _check("numba", spec, params, x)


@pytest.mark.parametrize("shape,boundary,integrator", list(itertools.product(SHAPES, BOUNDARIES, INTEGRATORS)))
def test_cuda_matches_reference(shape, boundary, integrator):
    pytest.importorskip("numba.cuda")
    spec, params, x = _case(shape, boundary, integrator, "cells", np.float64)
    _check("cuda", spec, params, x, rtol=CUDA_TOLERANCE[np.dtype(np.float64)])
