"""One comparison helper and one tolerance policy for the whole suite, plus case builders."""
import itertools

import numpy as np
import pytest

import kinn_ref as kr
from kinn_ref.backends import implemented_integrators
from kinn_ref.integrators import INTEGRATORS
from kinn_ref.parameterization import softplus_inverse
from kinn_ref.tolerances import relative_error, tolerance

# the package's one tolerance policy (kinn_ref.tolerances), keyed by dtype: CPU backends and the cuda backend
TOLERANCE = {np.dtype(d): tolerance(d, "cpu") for d in (np.float64, np.float32)}
CUDA_TOLERANCE = {np.dtype(d): tolerance(d, "gpu") for d in (np.float64, np.float32)}


def rel_error(actual, expected):
    """Norm-wise relative error (:func:`kinn_ref.tolerances.relative_error`); shapes must agree. Against an
    expected array of zeros only exact zeros pass (``inf`` otherwise), as a relative measure requires."""
    assert np.shape(actual) == np.shape(expected), (np.shape(actual), np.shape(expected))
    if not np.any(np.asarray(expected)):
        return 0.0 if not np.any(np.asarray(actual)) else float("inf")
    return relative_error(actual, expected)


def assert_close(actual, expected, rtol=None, dtype=np.float64, what=""):
    """Assert the norm-wise relative error is within ``rtol`` (default: the policy for ``dtype``)."""
    rtol = TOLERANCE[np.dtype(dtype)] if rtol is None else rtol
    err = rel_error(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


COUPLING_CASES = {
    "none": {"coupling": "none"},
    "dense": {"coupling": "dense"},
    "kirchhoff": {"coupling": "kirchhoff"},
    "grid1d-periodic": {"coupling": "grid", "grid_shape": (5,), "boundary": "periodic"},
    "grid1d-neumann": {"coupling": "grid", "grid_shape": (4,), "boundary": "neumann"},
    "grid1d-dirichlet": {"coupling": "grid", "grid_shape": (4,), "boundary": "dirichlet"},
    "grid2d-neumann": {"coupling": "grid", "grid_shape": (3, 4), "boundary": "neumann"},
    "grid2d-periodic": {"coupling": "grid", "grid_shape": (3, 3), "boundary": "periodic"},
}
INTEGRATOR_NAMES = kr.spec.INTEGRATORS
READOUT_NAMES = kr.spec.READOUTS
PARAM_NAMES = kr.spec.PARAMETERIZATIONS
#: (integrator, its order), from the registry: what the convergence tests measure
INTEGRATOR_ORDERS = [(name, method.order) for name, method in INTEGRATORS.items()]
COUPLING_KINDS = ("none", "matrix", "grid")     # what the numba backend compiles per coupling


def coupling_kind(coupling):
    """The numba backend's kernel family of a coupling: dense and kirchhoff share the matrix kernels."""
    return {"none": "none", "dense": "matrix", "kirchhoff": "matrix", "grid": "grid"}[coupling]


def default_kernel(integrator, kind):
    """``(readout, dtype)`` the default suite runs the numba kernels of ``(integrator, coupling kind)`` with.

    A Latin square: every integrator meets every readout and both dtypes, every coupling kind every
    readout and both dtypes, while the suite compiles one pair of pass kernels per (integrator, kind)
    (each costs seconds to compile); the other combinations run with ``--runslow``.
    """
    i, k = INTEGRATOR_NAMES.index(integrator), COUPLING_KINDS.index(kind)
    return READOUT_NAMES[(i + k) % 3], np.dtype(np.float32 if (2 * i + k) % 3 == 0 else np.float64)


def is_default_kernel(integrator, readout, coupling, dtype):
    """Whether these options use a numba kernel of the default suite (see :func:`default_kernel`)."""
    return default_kernel(integrator, coupling_kind(coupling)) == (readout, np.dtype(dtype))


def option_matrix(backend=None):
    """All (coupling case, integrator, readout, parameterization) combinations (those ``backend`` implements)."""
    integrators = INTEGRATOR_NAMES if backend is None else implemented_integrators(backend)
    return list(itertools.product(COUPLING_CASES, integrators, READOUT_NAMES, PARAM_NAMES))


def random_params(spec, rng, dtype=np.float64):
    """Parameters with every quantity away from its default, in a stable regime for dt ~ 0.1."""
    p = kr.init_params(spec, seed=rng, dtype=np.float64)
    K, H = spec.order, spec.n_nodes
    p["b"] = 0.3 * rng.standard_normal(p["b"].shape)
    p["leak"] = 0.3 * rng.standard_normal((K, H))
    p["beta"] = 1.0 + 0.5 * rng.standard_normal((K, H))
    if spec.param == "positive":
        p["C_raw"] = softplus_inverse(0.7 + rng.random((K, H)))
        p["g_raw"] = softplus_inverse(0.5 + rng.random((K, H)))
    else:
        p["C_raw"] = 0.7 + rng.random((K, H))
        p["g_raw"] = 0.5 + rng.random((K, H))
    if spec.coupling == "dense":
        p["G_raw"] = 0.4 * rng.standard_normal((K, H, H)) / np.sqrt(H)
    elif spec.coupling == "kirchhoff":
        p["G_raw"] = rng.standard_normal((K, H, H)) * 0.5 if spec.param == "positive" else \
            0.3 * rng.random((K, H, H))
    elif spec.coupling == "grid":
        p["G_raw"] = 0.2 + 0.3 * rng.random((K, H)) if spec.param == "raw" else \
            softplus_inverse(0.2 + 0.3 * rng.random((K, H)))
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in p.items()}


def on_default_kernel(coupling_case, integrator):
    """``readout`` and ``dtype`` for :func:`make_case` that run the default suite's kernel of this coupling
    case's kind and integrator (:func:`default_kernel`)."""
    readout, dtype = default_kernel(integrator, coupling_kind(COUPLING_CASES[coupling_case]["coupling"]))
    return {"readout": readout, "dtype": dtype.type}


def make_case(coupling_case="none", integrator="expeuler", readout="last", param="positive", order=2,
              sequence=False, return_sequences=False, batch=3, n_steps=4, in_features=3, n_nodes=3,
              dt=0.1, seed=0, dtype=np.float64, with_V0=True):
    """A spec, parameters, input and initial state for one point of the option matrix."""
    rng = np.random.default_rng(seed)
    spec = kr.LayerSpec(in_features, n_nodes, order=order, integrator=integrator, readout=readout,
                        param=param, dt=dt, n_steps=n_steps, return_sequences=return_sequences,
                        **COUPLING_CASES[coupling_case])
    params = random_params(spec, rng, dtype)
    x = rng.standard_normal(spec.input_shape(batch, n_steps if sequence else None)).astype(dtype)
    V0 = (0.5 * rng.standard_normal((batch, order, spec.total_nodes))).astype(dtype) if with_V0 else None
    return spec, params, x, V0


def tape_mismatch_case(dtype=np.float64):
    """A case whose numba kernels the default suite compiles anyway (dense, euler, cells, float64)."""
    return make_case("dense", "euler", "cells", order=2, sequence=True, batch=3, n_steps=4, dtype=dtype)


def check_tape_owns_its_inputs(backend):
    """Zeroing ``x`` and ``V0`` between forward and backward leaves the gradients as they were."""
    spec, params, x, V0 = tape_mismatch_case()
    y, tape = kr.forward(spec, params, x, V0, backend=backend)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    expected = kr.backward(spec, params, tape, dy)
    x2, V02 = x.copy(), V0.copy()
    y2, tape2 = kr.forward(spec, params, x2, V02, backend=backend)
    x2[:] = 0.0
    V02[:] = 0.0
    grads = kr.backward(spec, params, tape2, dy)
    assert np.array_equal(y2, y)
    for k in expected:
        np.testing.assert_array_equal(grads[k], expected[k], err_msg=k)


def check_backward_refuses_mismatches(backend):
    """Another spec, changed params or params of another dtype: a TapeMismatchError naming the argument;
    the tape still gives the right gradients afterwards."""
    from kinn_ref.errors import TapeMismatchError
    spec, params, x, V0 = tape_mismatch_case()
    y, tape = kr.forward(spec, params, x, V0, backend=backend)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    expected = kr.backward(spec, params, tape, dy)
    refusals = [
        (spec.replace(integrator="expeuler"), params, "spec",
         r"spec differs .*: integrator is 'expeuler' here, 'euler' in the forward pass"),
        (spec.replace(dt=0.05), params, "spec", r"dt is 0.05 here, 0.1 in the forward pass"),
        (spec.replace(dt=0.05, readout="last"), params, "spec",
         r"dt is 0.05 here, 0.1 in the forward pass; readout is 'last' here, 'cells' in the forward pass"),
        (spec, dict(params, g_raw=params["g_raw"] * 1.1), "params['g_raw']",
         r"params\['g_raw'\] changed since the forward pass \(6 of 6 values"),
        (spec, {k: v.astype(np.float32) for k, v in params.items()}, "params",
         r"params dtype float32 vs tape float64"),
    ]
    for bad_spec, bad_params, argument, match in refusals:
        d = dy.astype(bad_params["W"].dtype)
        with pytest.raises(TapeMismatchError, match=match) as info:
            kr.backward(bad_spec, bad_params, tape, d)
        assert isinstance(info.value, ValueError) and info.value.argument == argument
    changed = {k: v.copy() for k, v in params.items()}
    y, tape = kr.forward(spec, changed, x, V0, backend=backend)
    changed["W"][0, 0] += 1e-9                              # an update in place, before backward
    with pytest.raises(TapeMismatchError, match=r"params\['W'\] changed since the forward pass \(1 of 9 values, "
                                                r"by up to 1e-09\)"):
        kr.backward(spec, changed, tape, dy)
    changed["W"][0, 0] = params["W"][0, 0]                  # restored: accepted
    grads = kr.backward(spec, changed, tape, dy)
    for k in expected:
        np.testing.assert_array_equal(grads[k], expected[k], err_msg=k)
