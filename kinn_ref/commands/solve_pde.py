"""``kinn-ref solve-pde``: solve the heat equation with a KINN RC mesh, compare with the exact Fourier
solution, measure the order in dx, and plot.

The step is checked before anything runs: it must divide ``--t-end`` and be within the integrator's stable
range on the mesh (the project's stability analysis); ``--allow-unstable`` runs an unstable step anyway."""
import json
import math

import numpy as np

from ..spec import INTEGRATORS
from .output import add_output_argument, default_out, prepare_output_dir


X_LABEL, Y_LABEL = "x position (box length units)", "y position (box length units)"
U_LABEL = "u (units of u0, the initial condition)"


def add_arguments(parser):
    parser.add_argument("--dim", type=int, choices=(1, 2), default=1, help="space dimension (default 1)")
    parser.add_argument("--boundary", choices=("dirichlet", "neumann", "periodic"), default="dirichlet")
    parser.add_argument("--points", type=int, default=32, help="grid points per axis (default 32)")
    parser.add_argument("--diffusivity", type=float, default=1.0, help="kappa (default 1)")
    parser.add_argument("--t-end", type=float, default=0.1, help="final time (default 0.1)")
    parser.add_argument("--dt", type=float, default=1e-3,
                        help="time step; must divide --t-end and be stable for the integrator (default 1e-3)")
    parser.add_argument("--integrator", choices=INTEGRATORS, default="implicit",
                        help="one-step method in time (default implicit: A-stable)")
    parser.add_argument("--allow-unstable", action="store_true",
                        help="run a --dt beyond the integrator's largest stable step anyway (with a warning)")
    parser.add_argument("--backend", default="auto", help="numpy, numba, cuda or auto (default auto)")
    add_output_argument(parser, "--out", default=default_out("solve-pde"),
                        help="output directory (default ./kinn-runs/solve-pde)")


def plot_solution(sol, ref, path, title):
    """1-D: snapshots of the KINN mesh against the exact solution; 2-D: the field and its error.

    Parameters
    ----------
    sol : HeatSolution
        1-D solutions need their ``history``.
    ref : ndarray, grid shape
        The exact solution at the final time.
    path : str or Path
        PNG file to write.
    title : str

    Returns
    -------
    Path
    """
    from ..training.plots import pyplot, save_figure
    plt = pyplot()
    if sol.u.ndim == 1:
        (x,) = sol.grid
        fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
        n = len(sol.times) - 1
        for i in sorted({0, n // 4, n // 2, n}):
            ax.plot(x, sol.history[i], "o-", ms=3, label=f"KINN t={sol.times[i]:.3g}")
        ax.plot(x, ref, "k--", label="exact, final")
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(U_LABEL)
        ax.legend(fontsize=8)
    else:
        x, y = sol.grid
        h = sol.dx / 2
        extent = (x[0] - h, x[-1] + h, y[0] - h, y[-1] + h)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
        error = sol.u - ref
        span = float(np.max(np.abs(error))) or 1.0
        for ax, field, name, kw, label in (
                (axes[0], sol.u, "KINN mesh", {}, "u (units of u0)"),
                (axes[1], error, "error", {"cmap": "RdBu", "vmin": -span, "vmax": span}, "u - exact (units of u0)")):
            im = ax.imshow(field.T, origin="lower", extent=extent, **kw)
            fig.colorbar(im, ax=ax, label=label)
            ax.set_title(f"{name}, t={sol.times[-1]:.3g}")
            ax.set_xlabel(X_LABEL)
            ax.set_ylabel(Y_LABEL)
    fig.suptitle(title)
    return save_figure(fig, path)


def output_files(args):
    """The plot and the result file that ``run`` writes into ``--out``."""
    return f"heat_{args.dim}d_{args.boundary}.png", "result.json"


def _json_float(value):
    """``value`` as a float, or None where JSON has no number for it (an unbounded stable step)."""
    return float(value) if math.isfinite(value) else None


def run(args):
    from ..backends import resolve
    from ..errors import UnstableStepError
    from ..tasks.heat_check import (SPACE_POINTS, SPACE_T_END, convergence_dt, convergence_in_space, mode_error,
                                    time_steps)
    from ..training.atomic import atomic_write_text
    time_steps(args.t_end, args.dt, names=("--t-end", "--dt"))    # refused before any work
    out = prepare_output_dir(args.out, files=output_files(args))
    png_name, result_name = output_files(args)
    backend = resolve(args.backend)
    try:
        err, sol, ref = mode_error(args.boundary, args.dim, args.points, args.dt, args.t_end, args.diffusivity,
                                   args.integrator, backend, allow_unstable=args.allow_unstable)
    except UnstableStepError as exc:
        raise ValueError(f"--dt {exc.dt:g} is unstable for --integrator {exc.integrator} on this mesh: the "
                         f"largest stable dt is {exc.dt_max:.6g}; pass --dt <= {exc.dt_max:.6g}, --integrator "
                         "implicit or expeuler (stable for every dt), or --allow-unstable to run it anyway") from None
    stable = "unbounded" if math.isinf(sol.dt_max) else f"{sol.dt_max:.6g}"
    print(f"heat equation, {args.dim}-D, {args.boundary}, {args.points} points/axis, kappa={args.diffusivity:g}, "
          f"{args.integrator} on {backend}")
    print(f"  time step: dt={sol.dt:.6g}, {sol.n_steps} steps to t={sol.times[-1]:.6g}; largest stable dt of "
          f"{args.integrator} on this mesh: {stable}" + ("" if sol.stable else "  (UNSTABLE, --allow-unstable)"))
    print(f"  max error against the exact Fourier solution: {err:.3e}")
    dxs, errors, order = convergence_in_space(args.boundary, args.dim, diffusivity=args.diffusivity,
                                              backend=backend)
    space_dts = [convergence_dt(h, args.dim, args.diffusivity, SPACE_T_END) for h in dxs]
    print(f"  order in dx, measured separately: rk4 on {'/'.join(map(str, SPACE_POINTS))} points/axis to "
          f"t={SPACE_T_END:g}, dt the largest t/n <= dx^2/({4 * args.dim} kappa):")
    print("    " + "  ".join(f"dx={h:.4f} dt={s:.3g}: {e:.2e}" for h, s, e in zip(dxs, space_dts, errors))
          + f"  -> slope {order:.2f} (expected 2)")
    png = plot_solution(sol, ref, out / png_name,
                        f"heat equation, {args.boundary}, {args.integrator} dt={sol.dt:.3g}, max error {err:.2e}")
    atomic_write_text(out / result_name, json.dumps(
        {"dim": args.dim, "boundary": args.boundary, "points": args.points, "integrator": args.integrator,
         "dt": sol.dt, "n_steps": sol.n_steps, "dt_max": _json_float(sol.dt_max), "stable": sol.stable,
         "t_end": float(sol.times[-1]), "diffusivity": args.diffusivity, "backend": backend,
         "max_error": err, "space_integrator": "rk4", "space_t_end": SPACE_T_END, "space_points": list(SPACE_POINTS),
         "space_dx": dxs, "space_dt": space_dts, "space_errors": errors, "space_order": order,
         "final": np.asarray(sol.u).tolist()}, indent=1) + "\n")
    print(f"wrote {png} and {out / result_name}")
    return 0
