"""Checks of :func:`~kinn_ref.tasks.heat.solve_pde_with_kinn` against analytic Fourier solutions.

On the box ``[0, 1]^d`` the lowest non-constant mode of each boundary kind decays exactly:

- dirichlet: ``prod sin(pi x_i)``, rate ``d pi^2 kappa``;
- neumann: ``prod cos(pi x_i)``, rate ``d pi^2 kappa``;
- periodic: ``prod sin(2 pi x_i)``, rate ``4 d pi^2 kappa``.
"""
import math

import numpy as np

from .._checks import check_positive_float, check_step
from .heat import pde_grid, solve_pde_with_kinn

SPACE_POINTS = (8, 16, 32)    # grids of convergence_in_space
SPACE_T_END = 0.05            # its final time
SPACE_DT_FACTOR = 0.25        # its step: at most SPACE_DT_FACTOR * dx^2 / (d kappa), dividing t_end
DIVIDE_RTOL = 1e-9            # t_end / dt within this of a whole number counts as dividing
MAX_STEPS = 2 ** 53           # beyond this a float64 time n * dt no longer tells step n from step n + 1

_MODES = {"dirichlet": (np.sin, np.pi), "neumann": (np.cos, np.pi), "periodic": (np.sin, 2 * np.pi)}


def fourier_mode(boundary, dim):
    """``(u0, exact)``: the mode as a callable of the coordinates, and ``exact(t, kappa, *coords)``."""
    f, k = _MODES[boundary]

    def u0(*coords):
        return np.prod([f(k * c) for c in coords], axis=0)

    def exact(t, kappa, *coords):
        return u0(*coords) * np.exp(-dim * k ** 2 * kappa * t)

    return u0, exact


def time_steps(t_end, dt, names=("t_end", "dt")):
    """Number of steps of size ``dt`` that reach ``t_end`` exactly.

    Parameters
    ----------
    t_end : float
        Final time, > 0.
    dt : float
        Time step, > 0 and a normal float64; it must divide ``t_end`` (to a relative ``1e-9``) into at most
        ``2**53`` steps (:data:`MAX_STEPS`); it is never rounded.
    names : (str, str)
        How the messages name ``t_end`` and ``dt`` (e.g. the command-line options).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        Naming both values and the nearest step that divides ``t_end``.
    """
    t_name, dt_name = names
    t_end = check_positive_float(t_name, t_end)
    dt = check_step(dt_name, dt)
    ratio = t_end / dt
    if not ratio <= MAX_STEPS:
        raise ValueError(f"{dt_name} {dt:g} is too small for {t_name} {t_end:g}: {t_name} / {dt_name} = {ratio:.3g} "
                         f"steps, more than 2**53, beyond which the steps' times cannot be told apart in float64")
    n = max(1, int(round(ratio)))
    if abs(n * dt - t_end) > DIVIDE_RTOL * t_end:
        raise ValueError(f"{dt_name} {dt:g} does not divide {t_name} {t_end:g} into a whole number of steps "
                         f"({t_name} / {dt_name} = {ratio:.6g}); the nearest {dt_name} that does is {t_end / n:.6g} "
                         f"({n} step{'s' if n > 1 else ''})")
    return n


def mode_error(boundary, dim, points, dt, t_end, diffusivity=1.0, integrator="implicit", backend="numpy", *,
               allow_unstable=False):
    """Max-norm error at ``t_end`` of the KINN mesh against the exact decaying mode, and the solution.

    Parameters
    ----------
    boundary : {"dirichlet", "neumann", "periodic"}
    dim : {1, 2}
    points : int
        Nodes per axis of the unit box.
    dt : float
        Time step; it must divide ``t_end`` (:func:`time_steps`) and be stable for ``integrator`` on this mesh
        unless ``allow_unstable``.
    t_end : float
    diffusivity : float
    integrator : {"implicit", "trapezoidal", "expeuler", "euler", "rk4"}
    backend : str
    allow_unstable : bool
        Passed to :func:`~kinn_ref.tasks.heat.solve_pde_with_kinn`.

    Returns
    -------
    error : float
    solution : HeatSolution
        With the step used (``dt``, ``n_steps``) and the largest stable step (``dt_max``).
    exact : ndarray, grid shape
    """
    axes = pde_grid((1.0,) * dim, (points,) * dim, boundary)
    u0, exact = fourier_mode(boundary, dim)
    steps = time_steps(t_end, dt)
    sol = solve_pde_with_kinn(axes, u0, boundary, steps, dt=t_end / steps, diffusivity=diffusivity,
                              integrator=integrator, backend=backend, return_history=dim == 1,
                              allow_unstable=allow_unstable)
    ref = exact(t_end, diffusivity, *np.meshgrid(*axes, indexing="ij"))
    return float(np.abs(sol.u - ref).max()), sol, ref


def observed_order(hs, errors):
    """Least-squares slope of ``log(error)`` against ``log(h)``."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


def convergence_dt(dx, dim, diffusivity=1.0, t_end=SPACE_T_END):
    """The rk4 step of :func:`convergence_in_space` on a grid of spacing ``dx``: the largest ``t_end / n``
    that is at most ``SPACE_DT_FACTOR * dx^2 / (dim * diffusivity)`` (a quarter of the explicit scale, where
    rk4's time error is far below the space error, and inside its stable range ``2.7853 / (4 d kappa / dx^2)``).
    """
    target = SPACE_DT_FACTOR * dx ** 2 / (dim * diffusivity)
    return t_end / max(1, math.ceil(t_end / target * (1 - DIVIDE_RTOL)))


def convergence_in_space(boundary, dim, points=SPACE_POINTS, t_end=SPACE_T_END, diffusivity=1.0, backend="numpy"):
    """Errors for refined grids with a time error far below them (rk4 with :func:`convergence_dt`).

    Returns
    -------
    dx : list of float
    errors : list of float
    order : float
        The least-squares slope of ``log(error)`` against ``log(dx)`` (2 for this scheme).
    """
    dxs, errors = [], []
    for n in points:
        dx = pde_grid(1.0, n, boundary)[0]
        dx = float(dx[1] - dx[0])
        dt = convergence_dt(dx, dim, diffusivity, t_end)
        err, _, _ = mode_error(boundary, dim, n, dt, t_end, diffusivity, "rk4", backend)
        dxs.append(dx)
        errors.append(err)
    return dxs, errors, observed_order(dxs, errors)
