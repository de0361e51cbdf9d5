"""Checks of :func:`~kinn_ref.tasks.heat.solve_pde_with_kinn` against analytic Fourier solutions.

On the box ``[0, 1]^d`` the lowest non-constant mode of each boundary kind decays exactly:

- dirichlet: ``prod sin(pi x_i)``, rate ``d pi^2 kappa``;
- neumann: ``prod cos(pi x_i)``, rate ``d pi^2 kappa``;
- periodic: ``prod sin(2 pi x_i)``, rate ``4 d pi^2 kappa``.
"""
import numpy as np

from .heat import pde_grid, solve_pde_with_kinn

_MODES = {"dirichlet": (np.sin, np.pi), "neumann": (np.cos, np.pi), "periodic": (np.sin, 2 * np.pi)}


def fourier_mode(boundary, dim):
    """``(u0, exact)``: the mode as a callable of the coordinates, and ``exact(t, kappa, *coords)``."""
    f, k = _MODES[boundary]

    def u0(*coords):
        return np.prod([f(k * c) for c in coords], axis=0)

    def exact(t, kappa, *coords):
        return u0(*coords) * np.exp(-dim * k ** 2 * kappa * t)

    return u0, exact


def mode_error(boundary, dim, points, dt, t_end, diffusivity=1.0, integrator="implicit", backend="numpy"):
    """Max-norm error at ``t_end`` of the KINN mesh against the exact decaying mode, and the solution.

    Returns
    -------
    error : float
    solution : HeatSolution
    exact : ndarray, grid shape
    """
    axes = pde_grid((1.0,) * dim, (points,) * dim, boundary)
    u0, exact = fourier_mode(boundary, dim)
    steps = max(1, int(round(t_end / dt)))
    sol = solve_pde_with_kinn(axes, u0, boundary, steps, dt=t_end / steps, diffusivity=diffusivity,
                              integrator=integrator, backend=backend, return_history=dim == 1)
    ref = exact(t_end, diffusivity, *np.meshgrid(*axes, indexing="ij"))
    return float(np.abs(sol.u - ref).max()), sol, ref


def observed_order(hs, errors):
    """Least-squares slope of ``log(error)`` against ``log(h)``."""
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0])


def convergence_in_space(boundary, dim, points=(8, 16, 32), t_end=0.05, diffusivity=1.0, backend="numpy"):
    """Errors for refined grids with a time error far below them (rk4, 4 s dt <= 1 per axis).

    Returns
    -------
    dx : list of float
    errors : list of float
    order : float
    """
    dxs, errors = [], []
    for n in points:
        dx = pde_grid(1.0, n, boundary)[0]
        dx = float(dx[1] - dx[0])
        dt = 0.25 * dx ** 2 / (dim * diffusivity)
        err, _, _ = mode_error(boundary, dim, n, dt, t_end, diffusivity, "rk4", backend)
        dxs.append(dx)
        errors.append(err)
    return dxs, errors, observed_order(dxs, errors)
