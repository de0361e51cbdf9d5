"""The heat (diffusion) equation solved by a KINN RC mesh (method of lines).

    u_t = kappa * Laplacian(u) + f(x),     on a 1-D or 2-D box                               (H1)

Mapping onto one grid-coupled KINN layer (``coupling="grid"``, ``param="raw"``, one channel, one cell;
docs/math.md eq. 7): node ``p`` is grid point ``p``, its potential is ``u`` there, and

    C = 1,   g = 0,   leak = 0,   s = kappa / dx^2   (the edge conductance, ``G_raw``),
    I_p = f(x_p) + (boundary currents)               (``x`` of shape (1, P, 1), ``W = 1``, ``b = 0``),
    V0  = u(x, 0).

Kirchhoff's current law at node p is then ``du_p/dt = s * sum_neighbours (u_q - u_p) + I_p``: the standard
second-order finite-difference (finite-volume) semi-discretisation of (H1). Boundaries (one kind on all
edges, as the core's grid has):

- ``periodic``: nodes ``x_i = i dx``, ``dx = L / n``.
- ``dirichlet``: nodes ``x_i = (i + 1) dx``, ``dx = L / (n + 1)``; the mesh grounds each edge node through
  one edge conductance to a ghost node at distance ``dx`` (the boundary, held at 0). A boundary value
  ``g`` is the same conductance to a source at potential ``g``: an injected current ``s * g``.
- ``neumann``: cell centres ``x_i = (i + 1/2) dx``, ``dx = L / n``; no current leaves through a face
  (zero flux). A prescribed outward derivative ``du/dn = q`` is the injected current ``kappa * q / dx``
  (the face flux divided by the cell volume, with ``C = 1`` per unit volume).

In 2-D both axes share one conductance, so the spacing must be equal (``dx = dy``). The semi-discrete
error is ``O(dx^2)``; the time error is that of the integrator (implicit/expeuler/euler order 1,
trapezoidal order 2, rk4 order 4), and each integrator has its own stable ``dt``. The mesh is passive with a
real spectrum, so implicit, trapezoidal (Crank-Nicolson: second order and A-stable) and expeuler are stable
for every ``dt``, and the explicit methods for ``dt <= |z*| / |lambda_max|`` with
``lambda_max`` the Laplacian's extreme eigenvalue times ``kappa / dx^2`` (about ``-4 d kappa / dx^2``) and
``z* = -2`` (euler) or ``-2.7853`` (rk4). :func:`solve_pde_with_kinn` asks
:func:`kinn_ref.analysis.stability.layer_dt_max` for that bound and refuses a larger step
(docs/stability.md).
"""
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from .._checks import check_choice, check_positive_float, check_positive_int
from ..coupling import unit_laplacian_sparse
from ..errors import NonFiniteStateError, UnstableStepError, UnstableStepWarning
from ..functional import forward
from ..spec import BOUNDARIES, INTEGRATORS, LayerSpec


def pde_grid(lengths, points, boundary):
    """Node coordinates of the box ``[0, L_1] x ...`` for ``boundary`` (see the module docstring).

    Parameters
    ----------
    lengths : float or sequence of float
        Box side lengths (one per axis; 2-D boxes need ``L_1 / n_1 == L_2 / n_2`` spacing).
    points : int or sequence of int
        Nodes per axis.
    boundary : {"periodic", "neumann", "dirichlet"}

    Returns
    -------
    tuple of ndarray
        One coordinate array per axis.
    """
    check_choice("boundary", boundary, BOUNDARIES)
    lengths = np.atleast_1d(np.asarray(lengths, dtype=np.float64))
    points = np.atleast_1d(points)
    if lengths.shape != points.shape or lengths.size not in (1, 2):
        raise ValueError(f"lengths and points must both have 1 or 2 entries, got {lengths} and {points}")
    axes = []
    for L, n in zip(lengths, points):
        n = check_positive_int("points", int(n), minimum=2)
        if boundary == "periodic":
            axes.append(np.arange(n) * (L / n))
        elif boundary == "neumann":
            axes.append((np.arange(n) + 0.5) * (L / n))
        else:
            axes.append((np.arange(n) + 1.0) * (L / (n + 1)))
    return tuple(axes)


def _axes(spatial_grid):
    """Validated coordinate arrays and the common spacing ``dx``."""
    axes = (spatial_grid,) if isinstance(spatial_grid, np.ndarray) else tuple(spatial_grid)
    if len(axes) not in (1, 2):
        raise ValueError(f"spatial_grid must be one coordinate array (1-D) or a tuple of two (2-D), "
                         f"got {len(axes)} entries")
    axes = tuple(np.asarray(a, dtype=np.float64) for a in axes)
    dx = None
    for i, a in enumerate(axes):
        if a.ndim != 1 or a.size < 2:
            raise ValueError(f"spatial_grid axis {i} must be a 1-D array of >= 2 coordinates, got shape {a.shape}")
        steps = np.diff(a)
        if not np.allclose(steps, steps[0], rtol=1e-9, atol=0) or steps[0] <= 0:
            raise ValueError(f"spatial_grid axis {i} must be uniformly spaced and increasing")
        if dx is not None and not np.isclose(steps[0], dx, rtol=1e-9):
            raise ValueError(f"spatial_grid axes must share one spacing (the mesh has one conductance), got "
                             f"dx={dx} and {steps[0]}")
        dx = float(steps[0])
    return axes, dx


def _field(name, value, axes):
    """``value`` (scalar, array of the grid's shape, or callable of the meshgrid) as a grid array."""
    shape = tuple(a.size for a in axes)
    if callable(value):
        value = value(*np.meshgrid(*axes, indexing="ij"))
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), shape) if np.ndim(value) == 0 else \
        np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must be a scalar, a callable of the coordinates or an array of shape {shape}, "
                         f"got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return np.array(arr)


def _boundary(boundary_conditions):
    """``(kind, value)`` from a string or ``{"type": kind, "value" | "flux": ...}``."""
    if isinstance(boundary_conditions, str):
        return check_choice("boundary_conditions", boundary_conditions, BOUNDARIES), None
    if not isinstance(boundary_conditions, dict) or "type" not in boundary_conditions:
        raise ValueError("boundary_conditions must be 'periodic', 'neumann', 'dirichlet' or a dict "
                         "{'type': ..., 'value': ...} (dirichlet) / {'type': 'neumann', 'flux': ...}, "
                         f"got {boundary_conditions!r}")
    kind = check_choice("boundary_conditions['type']", boundary_conditions["type"], BOUNDARIES)
    key = {"dirichlet": "value", "neumann": "flux", "periodic": None}[kind]
    extra = set(boundary_conditions) - {"type", key}
    if extra:
        raise ValueError(f"boundary_conditions of type {kind!r} takes only {['type', key] if key else ['type']}, "
                         f"got {sorted(extra)}")
    return kind, boundary_conditions.get(key)


def _side_values(value, axes, axis, side, position):
    """Boundary data on one side: scalar, ``(low, high)`` pair (1-D) or callable of the boundary points."""
    if callable(value):
        coords = [a for a in axes]
        coords[axis] = np.array([position])
        vals = value(*np.meshgrid(*coords, indexing="ij"))
        return np.broadcast_to(np.asarray(vals, dtype=np.float64), tuple(c.size for c in coords))
    if isinstance(value, (tuple, list)):
        if len(axes) != 1 or len(value) != 2:
            raise ValueError("a (low, high) pair of boundary values is for 1-D grids; use a callable in 2-D")
        return np.asarray(float(value[side]))
    return np.asarray(float(value))


def boundary_currents(axes, dx, kind, value, diffusivity):
    """Currents injected at the edge nodes by inhomogeneous Dirichlet values or Neumann fluxes.

    Returns
    -------
    ndarray, shape of the grid
    """
    shape = tuple(a.size for a in axes)
    out = np.zeros(shape)
    if kind == "periodic" or value is None:
        return out
    s = diffusivity / dx ** 2
    for axis, a in enumerate(axes):
        for side, (index, offset) in enumerate(((0, -1.0), (a.size - 1, 1.0))):
            edge = [slice(None)] * len(axes)
            edge[axis] = slice(index, index + 1)
            if kind == "dirichlet":  # ghost node at distance dx, held at the boundary value
                out[tuple(edge)] += s * _side_values(value, axes, axis, side, a[index] + offset * dx)
            else:                   # outward derivative q through the face at distance dx/2
                out[tuple(edge)] += diffusivity / dx * _side_values(value, axes, axis, side,
                                                                     a[index] + offset * dx / 2)
    return out


@dataclass
class HeatSolution:
    """Result of :func:`solve_pde_with_kinn`.

    Attributes
    ----------
    u : ndarray, grid shape
        Solution after ``n_time_steps`` steps.
    times : ndarray, shape (n_time_steps + 1,)
    history : ndarray, shape (n_time_steps + 1, *grid shape), or None
        All states, the initial condition first (when ``return_history``).
    spec : LayerSpec
        The KINN layer that was integrated.
    params : dict of ndarray
        Its raw parameters (``G_raw = kappa / dx^2``).
    currents : ndarray, grid shape or (n_time_steps, *grid shape)
        The injected currents (source plus boundary terms).
    dx : float
        Grid spacing.
    dt : float
        The time step that was integrated.
    n_steps : int
        The number of steps (the final time is ``dt * n_steps``).
    dt_max : float
        Largest stable step of ``integrator`` on this mesh (``inf``: stable for every ``dt``).
    integrator : str
    grid : tuple of ndarray
        The node coordinates, one array per axis.
    """

    u: np.ndarray
    times: np.ndarray
    history: np.ndarray
    spec: LayerSpec
    params: dict
    currents: np.ndarray
    dx: float
    dt: float
    n_steps: int
    dt_max: float
    integrator: str
    grid: tuple

    @property
    def stable(self):
        """Whether ``dt`` is within the integrator's stable range on this mesh."""
        return within_stable_range(self.dt, self.dt_max)


STABLE_RTOL = 1e-9   # dt up to dt_max * (1 + STABLE_RTOL) counts as stable (rounding of the bound itself)


def within_stable_range(dt, dt_max):
    """Whether ``dt`` is at most ``dt_max``, up to the rounding of the bound (:data:`STABLE_RTOL`)."""
    return bool(dt <= dt_max * (1 + STABLE_RTOL))


def largest_stable_dt(spec, params):
    """Largest stable time step of ``spec.integrator`` on a heat mesh from :func:`heat_layer`.

    Asks the stability analysis (:func:`kinn_ref.analysis.stability.layer_dt_max`: the closed-form Fourier
    eigenvalues of the mesh Laplacian and each integrator's SymPy-derived stability region).

    Parameters
    ----------
    spec : LayerSpec
    params : dict of ndarray

    Returns
    -------
    dt_max : float
        Every ``0 < dt <= dt_max`` is stable; ``inf`` when every ``dt`` is (implicit, expeuler).
    rate : float
        ``|lambda_max|``, the largest decay rate of the mesh's modes (1/time).
    """
    from ..analysis.stability import layer_cells, layer_dt_max
    rate = max(float(np.max(np.abs(cell.eigenvalues()))) for cell in layer_cells(spec, params))
    return float(layer_dt_max(spec, params)), rate


def check_time_step(dt, dt_max, rate, integrator, allow_unstable=False):
    """Refuse (or, with ``allow_unstable``, warn about) a step beyond the stable range.

    Parameters
    ----------
    dt : float
        The requested step.
    dt_max, rate : float
        From :func:`largest_stable_dt`.
    integrator : str
    allow_unstable : bool
        Run an unstable step anyway, with an :class:`~kinn_ref.errors.UnstableStepWarning`.

    Raises
    ------
    UnstableStepError
        A ``ValueError`` naming the largest stable ``dt``, when ``dt > dt_max`` and not ``allow_unstable``.
    """
    if within_stable_range(dt, dt_max):
        return
    what = (f"dt={dt:.6g} is unstable for integrator {integrator!r} on this mesh: the largest stable dt is "
            f"{dt_max:.6g} (|z*| / |lambda_max|: the integrator's real stability limit over the mesh's fastest "
            f"decay rate |lambda_max| = {rate:.6g}), so the solution grows instead of decaying")
    if not allow_unstable:
        raise UnstableStepError(f"{what}; pass dt <= {dt_max:.6g}, an integrator stable for every dt "
                                "('implicit' or 'expeuler'), or allow_unstable=True to run it anyway",
                                dt, dt_max, integrator)
    warnings.warn(f"{what}; running it anyway, as allowed", UnstableStepWarning, stacklevel=3)


def heat_layer(shape, dx, kind, diffusivity, dt, n_steps, integrator="implicit", return_sequences=False,
               dtype=np.float64):
    """The KINN layer spec and raw parameters that encode (H1) on a grid (see the module docstring)."""
    spec = LayerSpec(1, 1, order=1, coupling="grid", integrator=integrator, dt=dt, n_steps=n_steps,
                     readout="last", param="raw", grid_shape=shape, boundary=kind,
                     return_sequences=return_sequences)
    one, zero = np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    params = {"W": one.copy(), "b": np.zeros(1, dtype), "C_raw": one.copy(), "g_raw": zero.copy(),
              "leak": zero.copy(), "beta": one.copy(), "G_raw": np.full((1, 1), diffusivity / dx ** 2, dtype)}
    return spec, params


def solve_pde_with_kinn(spatial_grid, initial_condition, boundary_conditions, n_time_steps, *, dt,
                        diffusivity=1.0, source=None, integrator="implicit", backend="numpy", return_history=False,
                        allow_unstable=False):
    """Solve the heat equation (H1) with a KINN RC mesh.

    Parameters
    ----------
    spatial_grid : ndarray or tuple of ndarray
        Uniformly spaced node coordinates, one array per axis (1-D or 2-D, equal spacing); see
        :func:`pde_grid` for where the nodes sit for each boundary kind.
    initial_condition : ndarray or callable
        ``u(x, 0)`` on the grid, or a callable of the meshgrid coordinates (``ij`` indexing).
    boundary_conditions : str or dict
        ``"periodic"``, ``"neumann"`` (zero flux), ``"dirichlet"`` (zero value), or
        ``{"type": "dirichlet", "value": v}`` / ``{"type": "neumann", "flux": q}`` with ``v``/``q`` a scalar,
        a ``(low, high)`` pair in 1-D, or a callable of the boundary point coordinates. ``q`` is the outward
        normal derivative ``du/dn``.
    n_time_steps : int
    dt : float
        Time step. It is checked against the largest stable step of ``integrator`` on this mesh
        (:func:`largest_stable_dt`; recorded as ``HeatSolution.dt_max``): euler ``dt <= 2 / |lambda_max|``,
        rk4 ``dt <= 2.7853 / |lambda_max|``, implicit, trapezoidal and expeuler every ``dt``.
    diffusivity : float
        ``kappa`` > 0.
    source : ndarray or callable, optional
        ``f(x)`` (grid shape or callable of the coordinates), or an array ``(n_time_steps, *grid shape)``
        of per-step values (held over each step).
    integrator : {"implicit", "trapezoidal", "expeuler", "euler", "rk4"}
    backend : str
    return_history : bool
        Keep every step's state.
    allow_unstable : bool
        Run a ``dt`` beyond the stable range anyway (with an :class:`~kinn_ref.errors.UnstableStepWarning`)
        instead of refusing it.

    Returns
    -------
    HeatSolution

    Raises
    ------
    kinn_ref.errors.UnstableStepError
        (a ``ValueError``) when ``dt`` exceeds the largest stable step and ``allow_unstable`` is false.
    """
    axes, dx = _axes(spatial_grid)
    shape = tuple(a.size for a in axes)
    kind, value = _boundary(boundary_conditions)
    n_time_steps = check_positive_int("n_time_steps", n_time_steps)
    dt = check_positive_float("dt", dt)
    diffusivity = check_positive_float("diffusivity", diffusivity)
    check_choice("integrator", integrator, INTEGRATORS)
    u0 = _field("initial_condition", initial_condition, axes)
    bc = boundary_currents(axes, dx, kind, value, diffusivity)
    if source is not None and not callable(source) and np.ndim(source) == len(shape) + 1:
        f = np.asarray(source, dtype=np.float64)
        if f.shape != (n_time_steps,) + shape:
            raise ValueError(f"a time-dependent source must have shape {(n_time_steps,) + shape}, got {f.shape}")
        currents = f + bc
        x = currents.reshape(1, n_time_steps, -1, 1)
    else:
        currents = bc + (0.0 if source is None else _field("source", source, axes))
        x = currents.reshape(1, -1, 1)
    spec, params = heat_layer(shape, dx, kind, diffusivity, dt, n_time_steps, integrator, return_history)
    dt_max, rate = largest_stable_dt(spec, params)
    check_time_step(dt, dt_max, rate, integrator, allow_unstable)
    V0 = u0.reshape(1, 1, -1)
    # an allowed unstable step has been warned about: the pass runs, and only a non-finite state stops it
    y, tape = forward(spec, params, np.ascontiguousarray(x), V0, backend=backend,
                      on_nonfinite="flag" if allow_unstable else "raise")
    if tape.nonfinite is not None:
        raise NonFiniteStateError(tape.nonfinite[0], tape.nonfinite[1], dt)
    times = dt * np.arange(n_time_steps + 1)
    history = None
    if return_history:
        history = np.concatenate([u0[None], y.reshape((n_time_steps,) + shape)])
        u = history[-1].copy()
    else:
        u = y.reshape(shape)
    return HeatSolution(u=u, times=times, history=history, spec=spec, params=params, currents=currents, dx=dx,
                        dt=dt, n_steps=n_time_steps, dt_max=dt_max, integrator=integrator, grid=axes)


def dc_solution(spatial_grid, boundary_conditions, diffusivity=1.0, source=None, mean=None):
    """Steady state of the mesh: the DC nodal equations ``G V = I``.

    ``G = -s L0`` is the conductance matrix of the mesh (``L0`` the unit grid Laplacian including the
    grounding of Dirichlet edges), ``I`` the source and boundary currents. For periodic and Neumann meshes
    ``G`` is singular (charge is conserved): the net current must vanish, and ``mean`` (the conserved mean
    of the initial condition) picks the solution.

    Returns
    -------
    ndarray, grid shape
    """
    axes, dx = _axes(spatial_grid)
    shape = tuple(a.size for a in axes)
    kind, value = _boundary(boundary_conditions)
    diffusivity = check_positive_float("diffusivity", diffusivity)
    I = boundary_currents(axes, dx, kind, value, diffusivity)
    if source is not None:
        I = I + _field("source", source, axes)
    I = I.reshape(-1)
    G = (-(diffusivity / dx ** 2) * unit_laplacian_sparse(shape, kind)).tocsc()
    if kind == "dirichlet":
        return scipy.sparse.linalg.spsolve(G, I).reshape(shape)
    if mean is None:
        raise ValueError(f"mean must be given for a {kind} mesh (its steady state is fixed by the conserved mean)")
    if abs(I.sum()) > 1e-9 * max(1.0, np.abs(I).sum()):
        raise ValueError(f"a {kind} mesh has a steady state only for zero net current, got {I.sum():.3g}")
    V = np.zeros(I.size)
    V[1:] = scipy.sparse.linalg.spsolve(G[1:, 1:], I[1:])  # node 0 pinned; its equation follows from the rest
    return (V - V.mean() + mean).reshape(shape)
