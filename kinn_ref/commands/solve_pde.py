"""``kinn-ref solve-pde``: solve the heat equation with a KINN RC mesh, compare with the exact Fourier
solution, measure the order in dx, and plot."""
import json
from pathlib import Path

import numpy as np


def add_arguments(parser):
    parser.add_argument("--dim", type=int, choices=(1, 2), default=1, help="space dimension (default 1)")
    parser.add_argument("--boundary", choices=("dirichlet", "neumann", "periodic"), default="dirichlet")
    parser.add_argument("--points", type=int, default=32, help="grid points per axis (default 32)")
    parser.add_argument("--diffusivity", type=float, default=1.0, help="kappa (default 1)")
    parser.add_argument("--t-end", type=float, default=0.1, help="final time (default 0.1)")
    parser.add_argument("--dt", type=float, default=1e-3, help="time step (default 1e-3)")
    parser.add_argument("--integrator", choices=("implicit", "expeuler", "euler", "rk4"), default="implicit")
    parser.add_argument("--backend", default="auto", help="numpy, numba, cuda or auto (default auto)")
    parser.add_argument("--out", type=Path, default=Path("kinn-runs") / "solve-pde",
                        help="output directory (default ./kinn-runs/solve-pde)")


def plot_solution(sol, ref, path, title):
    """1-D: snapshots of the KINN mesh against the exact solution; 2-D: the field and its error."""
    from ..training.plots import pyplot, save_figure
    plt = pyplot()
    if sol.u.ndim == 1:
        fig, ax = plt.subplots(figsize=(6, 3.8))
        n = len(sol.times) - 1
        for i in sorted({0, n // 4, n // 2, n}):
            ax.plot(sol.history[i], "o-", ms=3, label=f"KINN t={sol.times[i]:.3g}")
        ax.plot(ref, "k--", label="exact, final")
        ax.set_xlabel("node")
        ax.set_ylabel("u")
        ax.legend(fontsize=8)
    else:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
        im = axes[0].imshow(sol.u.T, origin="lower")
        fig.colorbar(im, ax=axes[0])
        axes[0].set_title("KINN mesh")
        im = axes[1].imshow((sol.u - ref).T, origin="lower", cmap="RdBu")
        fig.colorbar(im, ax=axes[1])
        axes[1].set_title("error")
    fig.suptitle(title)
    return save_figure(fig, path)


def run(args):
    from ..backends import resolve
    from ..tasks.heat_check import convergence_in_space, mode_error
    from ..training.atomic import atomic_write_text
    backend = resolve(args.backend)
    err, sol, ref = mode_error(args.boundary, args.dim, args.points, args.dt, args.t_end, args.diffusivity,
                               args.integrator, backend)
    print(f"heat equation, {args.dim}-D, {args.boundary}, {args.points} points/axis, kappa={args.diffusivity}, "
          f"{args.integrator} dt={args.dt:g} to t={args.t_end:g} on {backend}")
    print(f"  max error against the exact Fourier solution: {err:.3e}")
    dxs, errors, order = convergence_in_space(args.boundary, args.dim, diffusivity=args.diffusivity,
                                              backend=backend)
    print("  order in dx (rk4, dt ~ dx^2/4):  " + "  ".join(f"dx={h:.4f}: {e:.2e}" for h, e in zip(dxs, errors))
          + f"  -> slope {order:.2f} (expected 2)")
    args.out.mkdir(parents=True, exist_ok=True)
    png = plot_solution(sol, ref, args.out / f"heat_{args.dim}d_{args.boundary}.png",
                        f"heat equation, {args.boundary}, max error {err:.2e}")
    atomic_write_text(args.out / "result.json", json.dumps(
        {"dim": args.dim, "boundary": args.boundary, "points": args.points, "integrator": args.integrator,
         "dt": args.dt, "t_end": args.t_end, "diffusivity": args.diffusivity, "backend": backend,
         "max_error": err, "space_dx": dxs, "space_errors": errors, "space_order": order,
         "final": np.asarray(sol.u).tolist()}, indent=1) + "\n")
    print(f"wrote {png} and {args.out / 'result.json'}")
    return 0
