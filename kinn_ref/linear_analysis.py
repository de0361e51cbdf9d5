"""Numeric linear analysis of a layer: Jacobian, one-step amplification matrix, spectral radius, stable dt
and the exact (matrix-exponential) solution for constant input (docs/math.md, section 6).

Dense ``(K*N, K*N)`` matrices are built by applying the operators to the identity, so this module is for
layers of moderate size; state index ``k*N + n`` is node ``n`` of cell ``k``.
"""
import numpy as np
import scipy.linalg

from .coupling import make_coupling
from .dynamics import rhs
from .integrators import INTEGRATORS
from ._checks import check_step
from .parameterization import check_params, make_circuit
from .spec import check_spec


def _circuit(spec, params, without_leak=False):
    check_params(spec, params)
    circuit = make_circuit(spec, params)
    if without_leak:
        circuit.leak = np.zeros_like(circuit.leak)
    return circuit, make_coupling(spec, circuit)


def _basis(spec, dtype):
    n = spec.order * spec.total_nodes
    return np.eye(n, dtype=dtype).reshape(n, spec.order, spec.total_nodes)


def jacobian_matrix(spec, params):
    """``J`` of the continuous system ``dY/dt = J Y + c`` (eq. 21), shape ``(K*N, K*N)``."""
    circuit, coupling = _circuit(spec, params)
    E = _basis(spec, circuit.C.dtype)
    cols = rhs(circuit, coupling, E, None, affine=False)
    return cols.reshape(len(E), -1).T


def forcing(spec, params, I):
    """Constant term ``c`` of ``dY/dt = J Y + c`` for input current ``I`` (B, N); shape ``(B, K*N)``."""
    circuit, coupling = _circuit(spec, params)
    Y0 = np.zeros((I.shape[0], spec.order, spec.total_nodes), circuit.C.dtype)
    return rhs(circuit, coupling, Y0, I).reshape(I.shape[0], -1)


def amplification_matrix(spec, params, dt=None):
    """One-step matrix ``M`` of the integrator, ``Y^{n+1} = M Y^n + (input terms)`` (eq. 22).

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray
    dt : float, optional
        Step size, checked as ``LayerSpec.dt`` is (finite, > 0, a normal float); ``spec.dt`` when omitted.

    Returns
    -------
    ndarray, shape (K*N, K*N)

    Raises
    ------
    ValueError
        Naming ``spec``, ``params`` or ``dt`` when it is not what is expected.
    """
    if dt is not None:
        spec = check_spec(spec).replace(dt=check_step("dt", dt))
    circuit, coupling = _circuit(spec, params, without_leak=True)
    integrator = INTEGRATORS[spec.integrator]
    ctx = integrator.prepare(circuit, coupling, spec.dt)
    E = _basis(spec, circuit.C.dtype)
    cols = integrator.step(ctx, E, np.zeros((len(E), spec.total_nodes), circuit.C.dtype))
    return cols.reshape(len(E), -1).T


def spectral_radius(spec, params, dt=None):
    """Largest ``|eigenvalue|`` of :func:`amplification_matrix`; the scheme is stable when it is <= 1.

    ``dt`` (default ``spec.dt``) must be finite, > 0 and a normal float: a ValueError names it otherwise.
    """
    return float(np.max(np.abs(np.linalg.eigvals(amplification_matrix(spec, params, dt)))))


def max_stable_dt(spec, params, dt_min=1e-6, dt_max=1e6, rtol=1e-6, margin=1e-9):
    """Largest ``dt`` with spectral radius ``<= 1 + margin``, found by doubling from ``dt_min`` and bisection.

    Returns ``inf`` when the scheme is still stable at ``dt_max`` (A-stable integrators on passive cells)
    and ``0.0`` when it is unstable already at ``dt_min`` (an unstable continuous system).
    """
    def stable(dt):
        return spectral_radius(spec, params, dt) <= 1 + margin

    if not stable(dt_min):
        return 0.0
    lo = dt_min
    hi = lo * 2
    while stable(hi):
        lo, hi = hi, hi * 2
        if hi > dt_max:
            return float("inf")
    while hi - lo > rtol * lo:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return lo


def exact_states(spec, params, x, V0, times):
    """Exact states of the continuous system for static input at ``times`` (eq. 23).

    Uses the matrix exponential of the augmented matrix ``[[J, c], [0, 0]]`` per batch row.

    Parameters
    ----------
    x : ndarray, shape (B, D) (grid: (B, P, D))
    V0 : ndarray, shape (B, K, N), or None
    times : sequence of float

    Returns
    -------
    ndarray, shape (len(times), B, K, N)
    """
    J = jacobian_matrix(spec, params)
    n = J.shape[0]
    I = (x @ params["W"].T + params["b"]).reshape(x.shape[0], spec.total_nodes)
    c = forcing(spec, params, I)
    Y0 = np.zeros((x.shape[0], n)) if V0 is None else V0.reshape(x.shape[0], n)
    out = np.empty((len(times), x.shape[0], n))
    for b in range(x.shape[0]):
        aug = np.zeros((n + 1, n + 1))
        aug[:n, :n], aug[:n, n] = J, c[b]
        for i, t in enumerate(times):
            out[i, b] = (scipy.linalg.expm(t * aug) @ np.append(Y0[b], 1.0))[:n]
    return out.reshape(len(times), x.shape[0], spec.order, spec.total_nodes)
