"""Largest stable ``dt`` of a layer per integrator and cell, spectral radius and verdict (docs/stability.md).

The stacked system is block lower triangular (cell k is driven by cell k-1 only), for the continuous
Jacobian ``J`` and for every integrator's amplification matrix ``M``; so the spectrum of ``M`` is the union of
the spectra of the cells' diagonal blocks, and a layer's ``dt_max`` is the smallest of its cells'.

For the integrators whose map is a function of ``dt J`` (euler, implicit, rk4, trapezoidal), ``M = R(dt J)``
exactly (``R`` from :mod:`analysis.stability_functions`), so a cell is stable for ``dt`` when every
eigenvalue ``lam`` of its Jacobian block has ``|R(dt lam)| <= 1``: each eigenvalue's ray ``dt lam`` leaves
the stability region at a root of the SymPy-derived boundary polynomial.
The eigenvalues are closed forms for uncoupled cells (``-g/C``) and grids (Fourier modes of the mesh) and
numerical otherwise. The expeuler step splits the conductance, so its ``M`` is not a function of ``J``: a
cell whose coupling is passive (non-negative off-diagonal conductances, ``g >= 0``) has ``M >= 0`` with row
sums ``<= 1`` for every ``dt`` (unbounded); otherwise the first ``dt`` where the spectral radius of the cell's
``M(dt)`` reaches 1 is found by a scan and bisection.
"""
import functools
import math
from dataclasses import dataclass

import numpy as np

from kinn_ref.coupling import make_coupling
from kinn_ref.integrators import INTEGRATORS as METHODS
from kinn_ref.parameterization import check_params, make_circuit, softplus, softplus_inverse
from kinn_ref.spec import INTEGRATORS

from .discrete_map import grid_laplacian
from .stability_functions import (boundary_polynomial, real_stability_limit, stability_function, symbols,
                                  uncoupled_dt_max)

SCALE_TARGETS = ("coupling", "leak", "all")
MARGIN = 1e-10          # spectral radius <= 1 + MARGIN counts as stable (marginal modes, e.g. g = 0)
ZERO = 1e-12            # eigenvalue parts below ZERO * max|lam| are rounding noise of a zero


@dataclass
class Cell:
    """Numeric circuit of one cell of a layer.

    Attributes
    ----------
    kind : str
        The layer's coupling (``none``, ``dense``, ``kirchhoff``, ``grid``).
    C, g : ndarray, shape (N,)
        Capacitance and leak conductance per node.
    A : ndarray, shape (N, N), or None
        Coupling matrix ``A_k`` (None for ``none``; for ``grid`` formed only on demand).
    grid : tuple or None
        For ``grid``: ``(shape, boundary, s)`` with the per-channel edge conductance ``s`` of shape ``(H,)``.
    """

    kind: str
    C: np.ndarray
    g: np.ndarray
    A: np.ndarray = None
    grid: tuple = None

    @property
    def N(self):
        return self.C.shape[0]

    def coupling_matrix(self):
        """``A_k`` as a dense ``(N, N)`` matrix (formed from the stencil for a grid)."""
        if self.A is not None:
            return self.A
        if self.kind == "none":
            return np.zeros((self.N, self.N))
        shape, boundary, s = self.grid
        return np.kron(grid_laplacian(shape, boundary).astype(float), np.diag(s))

    def jacobian(self):
        """The cell's block of ``J``: ``(A_k - diag(g_k)) / C_k``, shape ``(N, N)``."""
        return (self.coupling_matrix() - np.diag(self.g)) / self.C[:, None]

    def eigenvalues(self):
        """Eigenvalues of :meth:`jacobian`: closed forms for ``none`` and ``grid``, numerical otherwise."""
        if self.kind == "none":
            return (-self.g / self.C).astype(complex)
        if self.kind == "grid":
            shape, boundary, s = self.grid
            H = s.shape[0]
            mu = unit_laplacian_eigenvalues(shape, boundary)                        # (P,)
            C, g = self.C[:H], self.g[:H]                                            # per channel
            return ((mu[:, None] * s[None, :] - g[None, :]) / C[None, :]).reshape(-1).astype(complex)
        if self.kind == "kirchhoff":   # similar to the symmetric C^-1/2 (A - g) C^-1/2: real spectrum
            r = 1.0 / np.sqrt(self.C)
            return np.linalg.eigvalsh(r[:, None] * (self.A - np.diag(self.g)) * r[None, :]).astype(complex)
        return np.linalg.eigvals(self.jacobian())

    def is_passive(self):
        """Whether the off-diagonal conductances and ``g`` are >= 0 and each node's own conductance ``g - d``
        covers its off-diagonal ones (then the expeuler step has ``M >= 0`` with row sums <= 1)."""
        if np.any(self.g < 0):
            return False
        if self.kind == "none":
            return True
        if self.kind == "grid":
            return bool(np.all(self.grid[2] >= 0))
        A = self.A
        off = A - np.diag(np.diagonal(A))
        return bool(np.all(off >= 0) and np.all(self.g - np.diagonal(A) >= off.sum(axis=1) * (1 - 1e-12)))


def unit_laplacian_eigenvalues(shape, boundary):
    """Eigenvalues of the unit mesh Laplacian ``L0`` (eq. 7) in closed form, shape ``(P,)``.

    Per axis of ``n`` points: periodic ``-4 sin^2(pi j / n)``, neumann ``-4 sin^2(pi j / (2 n))`` (j = 0..n-1),
    dirichlet ``-4 sin^2(pi j / (2 (n + 1)))`` (j = 1..n); a 2-D grid adds one value per axis (Kronecker sum).
    """
    per_axis = []
    for n in shape:
        if boundary == "periodic":
            j, m = np.arange(n), n
        elif boundary == "neumann":
            j, m = np.arange(n), 2 * n
        else:
            j, m = np.arange(1, n + 1), 2 * (n + 1)
        per_axis.append(-4.0 * np.sin(np.pi * j / m) ** 2)
    total = per_axis[0]
    for extra in per_axis[1:]:
        total = (total[:, None] + extra[None, :]).reshape(-1)
    return total


def _check_target(target):
    if target not in SCALE_TARGETS:
        raise ValueError(f"scale_target must be one of {list(SCALE_TARGETS)}, got {target!r}")


def default_scale_target(spec):
    """``"coupling"``, or ``"leak"`` for uncoupled cells (which have no coupling conductance)."""
    return "leak" if spec.coupling == "none" else "coupling"


def layer_cells(spec, params, scale=1.0, target="coupling"):
    """The numeric circuit of every cell, with conductances multiplied by ``scale``.

    Parameters
    ----------
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    scale : float
        Factor applied to the conductances named by ``target``.
    target : {"coupling", "leak", "all"}
        Scale the coupling conductances (``G``, ``S``, grid ``s``), the leak conductances ``g``, or both.

    Returns
    -------
    list of Cell
    """
    _check_target(target)
    check_params(spec, params)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    circuit = make_circuit(spec, p64)
    coupling = make_coupling(spec, circuit)
    scale_A = scale if target in ("coupling", "all") else 1.0
    scale_g = scale if target in ("leak", "all") else 1.0
    cells = []
    for k in range(spec.order):
        C, g = circuit.C[k].copy(), circuit.g[k] * scale_g
        if spec.coupling == "grid":
            cells.append(Cell("grid", C, g, grid=(spec.grid_shape, spec.boundary, circuit.A[k] * scale_A)))
        elif spec.coupling == "none":
            cells.append(Cell("none", C, g))
        else:   # apply(k, V) = V A_k^T, so applying it to the identity gives A_k^T
            A = coupling.apply(k, np.eye(spec.total_nodes)).T * scale_A
            cells.append(Cell(spec.coupling, C, g, A=A))
    return cells


def scale_conductances(spec, params, scale, target="coupling"):
    """Raw parameters whose circuit has the conductances of ``target`` multiplied by ``scale`` > 0.

    Inverts the parameterization where needed (``positive``: ``softplus_inverse(scale * softplus(raw))``), so
    the result runs on any backend. Consistent with :func:`layer_cells` with the same ``scale``.
    """
    _check_target(target)
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale!r}")
    positive = spec.param == "positive"
    out = {k: np.array(v) for k, v in params.items()}

    def scaled(raw):
        raw64 = np.asarray(raw, np.float64)
        return (softplus_inverse(scale * softplus(raw64)) if positive else scale * raw64).astype(raw.dtype)

    if target in ("leak", "all"):
        out["g_raw"] = scaled(params["g_raw"])
    if target in ("coupling", "all"):
        if spec.coupling == "none":
            raise ValueError("coupling 'none' has no coupling conductance to scale; use target 'leak' or 'all'")
        R = params["G_raw"]
        if spec.coupling == "dense":
            out["G_raw"] = scale * R
        elif spec.coupling == "kirchhoff":   # the circuit sees only (R + R^T)/2 off the diagonal
            out["G_raw"] = scaled(0.5 * (R + np.swapaxes(R, 1, 2)))
        else:
            out["G_raw"] = scaled(R)
    return out


@functools.lru_cache(maxsize=None)
def _boundary_coefficients(name):
    import sympy
    s = symbols()
    return [sympy.lambdify((s["x"], s["y"]), c, "numpy") for c in boundary_polynomial(name)]


def stability_function_numeric(name):
    """``R`` as a NumPy function: ``R(z)``, or ``R(w, z)`` for expeuler.

    For the integrators whose map depends on ``z`` alone, the closed form the integrator carries
    (:meth:`kinn_ref.integrators.Method.stability_function`, checked against :func:`stability_function` in
    ``tests/test_analysis_stability.py``), so that the divergence check of a layer's first pass does not
    import SymPy and derive it (0.7 s per process)."""
    method = METHODS[name]
    if method.function_of_dtJ:
        return method.stability_function
    return derived_stability_function_numeric(name)


@functools.lru_cache(maxsize=None)
def derived_stability_function_numeric(name):
    """``R`` of :func:`stability_function` (the SymPy derivation) turned into a NumPy function."""
    import sympy
    s = symbols()
    args = (s["z"],) if METHODS[name].function_of_dtJ else (s["w"], s["z"])
    return sympy.lambdify(args, stability_function(name), "numpy")


def ray_exit(name, lam):
    """Largest ``t`` such that ``|R(u lam)| <= 1`` for all ``0 < u <= t`` (euler, implicit, rk4).

    Parameters
    ----------
    name : {"euler", "implicit", "rk4"}
    lam : complex
        An eigenvalue of the Jacobian.

    Returns
    -------
    float
        ``inf`` when the whole ray is stable, 0 when it is unstable for small ``t``.
    """
    size = abs(lam)
    if size == 0:
        return math.inf
    unit = lam / size                           # Q is evaluated on the unit eigenvalue; t scales back
    coeffs = np.array([float(c(unit.real, unit.imag)) for c in _boundary_coefficients(name)])
    coeffs[np.abs(coeffs) < ZERO] = 0.0
    nonzero = np.flatnonzero(coeffs)
    if nonzero.size == 0 or coeffs[nonzero[0]] > 0:     # Q(0+) > 0: unstable immediately
        return 0.0 if nonzero.size else math.inf
    roots = np.roots(coeffs[::-1][: len(coeffs) - nonzero[0]])
    real = sorted(r.real for r in roots if abs(r.imag) <= 1e-9 * max(1.0, abs(r)) and r.real > 0)
    for r in real:
        u = r * (1 + 1e-7)
        if np.polyval(coeffs[::-1], u) > 0:
            return float(r) / size
    return math.inf


def _clean(eigs):
    """Set parts below ``ZERO * max|lam|`` to zero (rounding noise of zero eigenvalues or real parts)."""
    eigs = np.asarray(eigs, complex)
    if eigs.size == 0:
        return eigs
    tol = ZERO * max(1.0, float(np.max(np.abs(eigs))))
    re, im = eigs.real.copy(), eigs.imag.copy()
    re[np.abs(re) < tol] = 0.0
    im[np.abs(im) < tol] = 0.0
    return re + 1j * im


def amplification_block(cell, name, dt):
    """The cell's diagonal block of the amplification matrix ``M`` (eq. 22), shape ``(N, N)``.

    ``R(dt J)`` of the integrator (euler ``I + dt J``, implicit ``(I - dt J)^-1``, rk4 its polynomial);
    expeuler ``diag(E) + diag(p) O``.
    """
    method = METHODS[name]
    if method.function_of_dtJ:
        return method.amplification_matrix(dt * cell.jacobian())
    A = cell.coupling_matrix()
    d = np.diagonal(A)
    a = dt * (cell.g - d) / cell.C
    phi = np.where(a == 0, 1.0, -np.expm1(-a) / np.where(a == 0, 1.0, a))
    return np.diag(np.exp(-a)) + (dt * phi / cell.C)[:, None] * (A - np.diag(d))


def cell_spectral_radius(cell, name, dt):
    """Spectral radius of the cell's amplification block at ``dt``: ``max |R(dt lam)|`` over the eigenvalues of
    ``J`` for euler, implicit and rk4; the eigenvalues of ``M`` itself for expeuler."""
    with np.errstate(all="ignore"):      # a growing mode may overflow: its radius is then inf
        if not METHODS[name].function_of_dtJ:
            return finite_spectral_radius(amplification_block(cell, name, dt))
        R = stability_function_numeric(name)
        rho = float(np.max(np.abs(R(dt * cell.eigenvalues()))))
    return rho if np.isfinite(rho) else math.inf


def finite_spectral_radius(M):
    """Largest ``|eigenvalue|`` of ``M``; ``inf`` when ``M`` holds non-finite entries (an overflowed step)."""
    if not np.all(np.isfinite(M)):
        return math.inf
    return float(np.max(np.abs(np.linalg.eigvals(M))))


@dataclass(frozen=True)
class StableStep:
    """The stable step sizes of one integrator on one cell.

    Attributes
    ----------
    integrator : str
    cell : int
        0-based cell index.
    dt_max : float
        Every ``0 < dt <= dt_max`` is stable; ``inf`` when unbounded, 0 when unstable for small ``dt``.
    method : str
        How ``dt_max`` was obtained.
    stable_from : float or None
        For implicit steps on a growing mode: stable only for ``dt >= stable_from``.
    """

    integrator: str
    cell: int
    dt_max: float
    method: str
    stable_from: float = None


def cell_dt_max(cell, name, index=0):
    """:class:`StableStep` of integrator ``name`` on ``cell`` (see the module docstring for the methods)."""
    if name not in INTEGRATORS:
        raise ValueError(f"integrator must be one of {sorted(INTEGRATORS)}, got {name!r}")
    integrator = METHODS[name]
    if not integrator.function_of_dtJ:
        if cell.is_passive():
            return StableStep(name, index, math.inf, "passive cell: M >= 0 with row sums <= 1 for every dt")
        return StableStep(name, index, _first_unstable_dt(cell, name), "spectral radius of M(dt)")
    eigs = _clean(cell.eigenvalues())
    if cell.kind == "none":
        exits = [uncoupled_dt_max(name, C, g) for C, g in zip(cell.C, cell.g)]
        if integrator.a_stable:
            method = "A-stable, g >= 0"
        else:
            method = f"closed form |z*| C/g per node, z* = {float(real_stability_limit(name)):.5g}"
    else:
        exits = [ray_exit(name, lam) for lam in eigs]
        method = ("closed form on the Fourier modes of the grid" if cell.kind == "grid" else
                  "R(dt lam) on the eigenvalues of J")
    dt_max = float(min(exits))
    stable_from = None
    if integrator.a_stable:
        growing = eigs[eigs.real > 0]
        if growing.size:
            starts = [integrator.stable_from(lam) for lam in growing]
            if all(start is not None for start in starts):
                stable_from = float(max(starts))
                method = f"growing mode: stable only for dt >= {stable_from:.6g}"
            else:
                method = "growing mode: unstable for every dt"
        elif cell.kind != "none":
            method = "A-stable, Re(lam) <= 0"
    return StableStep(name, index, dt_max, method, stable_from)


def _first_unstable_dt(cell, name, rtol=1e-12):
    """First ``dt`` where the spectral radius of ``M(dt)`` exceeds ``1 + MARGIN`` (scan, then bisection)."""
    eigs = cell.eigenvalues()
    tau = 1.0 / max(float(np.max(np.abs(eigs))), 1e-300)

    def stable(dt):
        return cell_spectral_radius(cell, name, dt) <= 1 + MARGIN

    grid = tau * np.logspace(-6, 6, 121)
    if not stable(grid[0]):
        return 0.0
    lo = grid[0]
    for hi in grid[1:]:
        if not stable(hi):
            break
        lo = hi
    else:
        return math.inf
    while hi - lo > rtol * lo:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return float(lo)


def dt_max_table(spec, params, scale=1.0, target="coupling", integrators=INTEGRATORS):
    """:class:`StableStep` per integrator and cell.

    Returns
    -------
    dict of str -> list of StableStep
        One entry per cell, in cascade order.
    """
    cells = layer_cells(spec, params, scale, target)
    return {name: [cell_dt_max(c, name, k) for k, c in enumerate(cells)] for name in integrators}


def layer_dt_max(spec, params, integrator=None, scale=1.0, target="coupling"):
    """Largest stable ``dt`` of the layer (the smallest over its cells) for ``integrator`` (default:
    ``spec.integrator``)."""
    name = integrator or spec.integrator
    return min(s.dt_max for s in dt_max_table(spec, params, scale, target, (name,))[name])


def layer_spectral_radius(spec, params, dt=None, integrator=None, scale=1.0, target="coupling"):
    """Spectral radius of the layer's amplification matrix (the largest over its cells), from the analysis."""
    name = integrator or spec.integrator
    dt = spec.dt if dt is None else float(dt)
    return max(cell_spectral_radius(c, name, dt) for c in layer_cells(spec, params, scale, target))


def verdict(rho):
    """``"stable"``, ``"marginal"`` (``|rho - 1| <= MARGIN``) or ``"unstable"``."""
    if abs(rho - 1) <= MARGIN:
        return "marginal"
    return "stable" if rho < 1 else "unstable"
