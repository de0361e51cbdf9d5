"""Per-pass constants of the integrators (twins of each integrator's ``prepare``) and the chaining of the
per-pass gradient sums into circuit gradients (twins of ``finalize_vjp`` plus the regrouped sums of
:mod:`.node_math.slots`, docs/math.md eqs. 38-41).
"""
import math
from types import SimpleNamespace

import numpy as np

from ...integrators import INTEGRATORS
from ..codes import INTEGRATOR_CODES
from .node_math.scalars import scalar_functions
from .node_math.slots import RHS
from .runtime.compat import cuda_module
from .runtime.device import empty, kernel_cache, launch_1d, scalar

cuda = cuda_module()

CODES = INTEGRATOR_CODES  # the kernels' integrator codes (eq. 12-16, 36), shared with the numba backend
IMPLICIT, TRAPEZOIDAL = CODES["implicit"], CODES["trapezoidal"]


#: The per-node updates of :mod:`.node_math.cascade`, in the order of their integer codes in the cell kernels.
UPDATE_KINDS = ("linear", "implicit", "rk4", "trapezoidal")
UPDATE_CODES = {kind: code for code, kind in enumerate(UPDATE_KINDS)}


def update_kind(integrator):
    """The per-node update the kernels run for ``integrator`` (a name of :data:`kinn_ref.spec.INTEGRATORS`),
    read from its method object, not its name: ``"rk4"`` for a method with a Runge-Kutta ``tableau`` (stages of
    eq. 1), ``"implicit"`` / ``"trapezoidal"`` for one that solves per cell with ``capacitance_scale`` 1 / 2
    (eqs. 15, 36), ``"linear"`` for a one-stage update ``c1 V + c2 (term - leak + u)`` with per-pass
    coefficients (euler, expeuler; eqs. 12-13)."""
    method = INTEGRATORS[integrator]
    if method.tableau is not None:
        return "rk4"
    return {None: "linear", 1: "implicit", 2: "trapezoidal"}[method.capacitance_scale]


def _scale(spec):
    """The ``s`` of ``s C/dt`` of a method that solves per cell
    (:attr:`~kinn_ref.integrators.Method.capacitance_scale`); 0 for the others."""
    return INTEGRATORS[spec.integrator].capacitance_scale or 0


@kernel_cache
def _kernels(dtype):
    fn = scalar_functions(dtype)
    phi1, phi1_grad = fn.phi1, fn.phi1_grad
    f = np.dtype(dtype).type
    zero, one = f(0.0), f(1.0)

    @cuda.jit
    def prepare(C, g, d, dt, code, scale, c1, c2, a):
        """euler: ``E = 1 - dt g/C, p = dt/C``; expeuler (eq. 14): ``E = exp(-a), p = dt phi1(a)/C``;
        implicit (eq. 15) and trapezoidal (eq. 36): ``h = s C/dt`` and ``1/(h + g)`` with ``s`` the method's
        ``capacitance_scale``; into ``c1, c2`` (and ``a``)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = C.shape
        while i < K * N:
            k = i // N
            n = i % N
            Ck = C[k, n]
            if code == 0:
                c1[k, n] = one - dt * g[k, n] / Ck
                c2[k, n] = dt / Ck
                a[k, n] = zero
            elif code == 1:
                ak = dt * (g[k, n] - d[k, n]) / Ck
                a[k, n] = ak
                c1[k, n] = math.exp(-ak)
                c2[k, n] = dt * phi1(ak) / Ck
            elif code == IMPLICIT or code == TRAPEZOIDAL:
                h = scale * Ck / dt
                c1[k, n] = h
                c2[k, n] = one / (h + g[k, n])
                a[k, n] = zero
            else:
                c1[k, n] = zero
                c2[k, n] = zero
                a[k, n] = zero
            i += stride

    @cuda.jit
    def finalize(sums, C, g, leak, beta, c1, c2, a, s, H, xdot, xdot_rhs, dt, code, scale,
                 dC, dg, dleak, dbeta, dd, dnode):
        """Circuit gradients from the reduced sums (see :mod:`slots`); ``s`` per channel (grid) or zeros,
        ``xdot``/``xdot_rhs`` the coupling part of ``sum dV1 q`` / ``sum dF F C`` (dense, kirchhoff)."""
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        K, N = C.shape
        while i < K * N:
            k = i // N
            n = i % N
            Ck, gk, lk, bk = C[k, n], g[k, n], leak[k, n], beta[k, n]
            sk = s[k, n % H]
            vC = zero
            vg = zero
            vl = zero
            vb = zero
            vd = zero
            vn = zero
            if code <= 1:
                E, p = c1[k, n], c2[k, n]
                A1, A2, A3, A4 = sums[k, 0, n], sums[k, 1, n], sums[k, 2, n], sums[k, 3, n]
                dE = A2
                dp = (bk if k > 0 else one) * A3 - lk * A1 + sk * A4 + xdot[k, n]
                vl = -p * A1
                vb = p * A3 if k > 0 else zero
                vn = p * A4
                if code == 1:
                    ak = a[k, n]
                    da = -E * dE + dp * dt * phi1_grad(ak) / Ck
                    vC = -dp * p / Ck - da * ak / Ck
                    vg = da * dt / Ck
                    vd = -da * dt / Ck
                else:
                    vC = (dE * dt * gk - dp * dt) / (Ck * Ck)
                    vg = -dE * dt / Ck
            elif code == IMPLICIT or code == TRAPEZOIDAL:
                # h V (both) and -g V - leak (trapezoidal's start-of-step current) on the right, h + g on the left
                dh = sums[k, 1, n]
                dc = -sums[k, 2, n]
                vC = scale * (dh + dc) / dt
                vg = dc
                vl = -sums[k, 0, n]
                if code == TRAPEZOIDAL:
                    vg -= dh
                    vl += vl
                vb = sums[k, 3, n] if k > 0 else zero
                vn = sums[k, 4, n]
            R1, R2, R3, R4, R5 = (sums[k, RHS, n], sums[k, RHS + 1, n], sums[k, RHS + 2, n], sums[k, RHS + 3, n],
                                  sums[k, RHS + 4, n])
            vC -= (R1 + sk * R5 + xdot_rhs[k, n]) / (Ck * Ck)
            vg -= R2 / Ck
            vl -= R3 / Ck
            if k > 0:
                vb += R4 / Ck
            vn += R5 / Ck
            dC[k, n] = vC
            dg[k, n] = vg
            dleak[k, n] = vl
            dbeta[k, n] = vb
            dd[k, n] = vd
            dnode[k, n] = vn
            i += stride

    return SimpleNamespace(prepare=prepare, finalize=finalize)


def prepare(spec, circuit, diag):
    """Integrator constants ``c1, c2, a`` (K, N) on the device; ``diag`` is ``d_k = diag(A_k)`` (expeuler)."""
    dtype = circuit.C.dtype
    K, N = circuit.C.shape
    kern = _kernels(dtype.str).prepare
    c1, c2, a = (empty((K, N), dtype) for _ in range(3))
    launch_1d(kern, K * N, circuit.C, circuit.g, diag, scalar(dtype, spec.dt), CODES[spec.integrator],
              scalar(dtype, _scale(spec)), c1, c2, a)
    return SimpleNamespace(c1=c1, c2=c2, a=a)


def finalize(spec, circuit, consts, sums, s, xdot, xdot_rhs):
    """Circuit gradients ``(dC, dg, dleak, dbeta, dd, dnode)``, each (K, N), from the reduced sums (K, slots, N).

    ``dd`` is the gradient of the coupling diagonal (expeuler), ``dnode`` the per-node coupling gradient of the
    grid (sum over points gives the edge-conductance gradient).
    """
    dtype = circuit.C.dtype
    K, N = circuit.C.shape
    kern = _kernels(dtype.str).finalize
    out = [empty((K, N), dtype) for _ in range(6)]
    launch_1d(kern, K * N, sums, circuit.C, circuit.g, circuit.leak, circuit.beta, consts.c1, consts.c2, consts.a,
              s, s.shape[1], xdot, xdot_rhs, scalar(dtype, spec.dt), CODES[spec.integrator],
              scalar(dtype, _scale(spec)), *out)
    return out
