"""``kinn-ref demo``: the tour of kinn_ref on a fresh install, in a few minutes on two cores.

1. the layer itself: each integrator's measured convergence order and a gradient check;
2. the heat equation solved by a KINN RC mesh against its exact Fourier solution (order 2 in dx);
3. a damped oscillator learned by KINN cascades of order K = 1, 2, 3;
4. the 8x8 digits (when scikit-learn is installed): KINN against an MLP;
5. Burgers operator learning at reduced size: KINN against an MLP trained by the same trainer.

It prints a results table and writes plots, metrics and ``results.json`` under ``--out``.
"""
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

from .. import LayerSpec, backward, forward, init_params
from ..linear_analysis import exact_states
from ..spec import INTEGRATORS


def add_arguments(parser):
    parser.add_argument("--out", type=Path, default=Path("kinn-runs") / "demo",
                        help="output directory (default ./kinn-runs/demo)")
    parser.add_argument("--backend", default="auto", help="numpy, numba, cuda or auto (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes: two epochs per model")


# --------------------------------------------------------------------------- 1. the layer
def _case(integrator, dt, n_steps, seed):
    spec = LayerSpec(3, 4, order=2, coupling="dense", integrator=integrator, dt=dt, n_steps=n_steps,
                     readout="cells")
    rng = np.random.default_rng(seed)
    params = init_params(spec, seed=rng)
    params["leak"] = 0.2 * rng.standard_normal(params["leak"].shape)
    return spec, params, rng.standard_normal((2, 3))


def integrator_order(integrator, seed, backend, t_end=1.0):
    """Log-log slope of the error at ``t_end`` against the exact solution, dt = 1/8 .. 1/32."""
    errors, dts = [], []
    for n in (8, 16, 32):
        spec, params, x = _case(integrator, t_end / n, n, seed)
        y, _ = forward(spec, params, x, backend=backend)
        exact = exact_states(spec, params, x, None, [t_end])[0].reshape(y.shape)
        errors.append(np.linalg.norm(y - exact) / np.linalg.norm(exact))
        dts.append(t_end / n)
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


def gradient_error(seed, backend, eps=1e-6):
    """Worst relative mismatch between backward() and central differences, over all parameters and x."""
    spec, params, x = _case("expeuler", 0.1, 10, seed)
    y, tape = forward(spec, params, x, backend=backend)
    rng = np.random.default_rng(seed + 1)
    w = rng.standard_normal(y.shape)
    grads = backward(spec, params, tape, w)
    worst = 0.0
    for name in list(params) + ["x"]:
        base = x if name == "x" else params[name]
        d = rng.standard_normal(base.shape)
        vals = []
        for sign in (1, -1):
            p, xx = dict(params), x
            if name == "x":
                xx = x + sign * eps * d
            else:
                p[name] = base + sign * eps * d
            vals.append(np.sum(w * forward(spec, p, xx, backend=backend)[0]))
        fd = (vals[0] - vals[1]) / (2 * eps)
        worst = max(worst, abs(fd - np.sum(grads[name] * d)) / max(1.0, abs(fd)))
    return worst


# --------------------------------------------------------------------------- plots
def _plot_sequences(trainers, data, path):
    from ..training.plots import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    x, y = data.x_test[:1], data.y_test[0, :, 0]
    t = np.arange(1, len(y) + 1) * 0.1
    ax.plot(t, x[0, :, 0], color="0.7", label="input u")
    ax.plot(t, y, "k", lw=2, label="target y")
    for name, tr in trainers.items():
        ax.plot(t, tr.predict(x)[0, :, 0], "--", label=name)
    ax.set_xlabel("t")
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("damped oscillator, held-out sequence")
    return save_figure(fig, path)


def _plot_fields(trainers, prepared, data, path):
    """Left: u(x, 0) and u(x, 1); right: u(x, 1) minus the conserved mean, the part a model must learn."""
    from ..training.plots import pyplot, save_figure
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    mean = data.x_test[0].mean()
    axes[0].plot(data.x_test[0], color="0.6", label="u(x, 0)")
    axes[0].plot(data.y_test[0], "k", lw=2, label="u(x, 1)")
    axes[1].plot(data.y_test[0] - mean, "k", lw=2, label="u(x, 1) - mean")
    for name, tr in trainers.items():
        pred = tr.predict(prepared[name][:1]).reshape(-1)
        axes[0].plot(pred, "--", label=name)
        axes[1].plot(pred - mean, "--", label=name)
    for ax in axes:
        ax.set_xlabel("grid point")
        ax.legend(fontsize=8)
    axes[1].set_title("deviation from the conserved mean", fontsize=10)
    fig.suptitle("Burgers, a held-out initial condition")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the run
def _row(rows, task, model, metric, value, epochs, seconds):
    rows.append({"task": task, "model": model, "metric": metric, "value": value, "epochs": epochs,
                 "seconds": seconds})


def _train(rows, task, model, out, args, data, overrides):
    from ..tasks.run import train_task
    result, records, trainer = train_task(task, model, size="small", seed=args.seed, backend=args.backend,
                                          out_dir=out / f"{task}-{model}", dataset=data, progress=True,
                                          **overrides)
    _row(rows, task, model, result["metric"], result["value"], result["epochs"], result["train_seconds"])
    return records, trainer


def run(args):
    from ..backends import resolve
    from ..tasks.heat_check import convergence_in_space, mode_error
    from ..tasks.registry import get_task
    from ..training.atomic import atomic_write_text
    from ..training.plots import plot_curves
    from .solve_pde import plot_solution

    start = time.perf_counter()
    backend = resolve(args.backend)
    args.backend = backend
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"epochs": 2} if args.quick else {}
    rows = []
    print(f"kinn-ref demo on backend {backend!r}; output in {out}/")

    print("\n[1/5] the KINN layer: convergence order of each integrator (cascade K=2, dense coupling)")
    orders = {name: integrator_order(name, args.seed, backend) for name in INTEGRATORS}
    print("      " + "  ".join(f"{k} {v:.2f}" for k, v in orders.items()) + "   (expected 1, 1, 1, 4)")
    grad_err = gradient_error(args.seed, backend)
    print(f"      gradients against central differences: worst relative mismatch {grad_err:.1e}")

    print("\n[2/5] heat equation on a KINN RC mesh (implicit, exact Fourier solution as reference)")
    heat = {}
    for dim, boundary, points in ((1, "dirichlet", 32), (2, "neumann", 24)):
        err, sol, ref = mode_error(boundary, dim, points, 1e-3, 0.1, 1.0, "implicit", backend)
        dxs, errors, order = convergence_in_space(boundary, dim, backend=backend)
        plot_solution(sol, ref, out / f"pde_heat_{dim}d_{boundary}.png", f"heat, {dim}-D {boundary}, error {err:.1e}")
        heat[f"{dim}d-{boundary}"] = {"max_error": err, "order_dx": order}
        print(f"      {dim}-D {boundary:<9} max error {err:.2e}   order in dx {order:.2f} (expected 2)")
        _row(rows, f"heat {dim}-D {boundary}", "RC mesh", "max error", err, None, None)

    print("\n[3/5] damped oscillator: KINN cascades of order K = 1, 2, 3")
    task = get_task("oscillator")
    data = task.make_data("small", args.seed)
    runs, trainers = {}, {}
    for model in task.models:
        runs[model], trainers[model] = _train(rows, "oscillator", model, out, args, data, overrides)
        print(f"      {model}: held-out relative L2 {rows[-1]['value']:.3g}")
    plot_curves(runs, out / "train_oscillator_curves.png", title="damped oscillator")
    _plot_sequences(trainers, data, out / "train_oscillator_prediction.png")

    print("\n[4/5] 8x8 digits: KINN against an MLP")
    if importlib.util.find_spec("sklearn") is None:
        print("      skipped: scikit-learn is not installed (python -m pip install 'kinn-ref[digits]')")
    else:
        task = get_task("digits")
        data = task.make_data("full", args.seed)
        runs = {}
        for model in task.models:
            from ..tasks.run import train_task
            result, runs[model], _ = train_task("digits", model, size="full", seed=args.seed, backend=backend,
                                                out_dir=out / f"digits-{model}", dataset=data, **overrides)
            _row(rows, "digits", model, "accuracy", result["value"], result["epochs"], result["train_seconds"])
            print(f"      {model}: held-out accuracy {result['value']:.4f}")
        plot_curves(runs, out / "train_digits_curves.png", title="8x8 digits")

    print("\n[5/5] Burgers u(x,0) -> u(x,1) at 64 points: KINN against an MLP")
    task = get_task("burgers")
    data = task.make_data("small", args.seed)
    runs, trainers, prepared = {}, {}, {}
    for model in ("kinn", "mlp"):
        runs[model], trainers[model] = _train(rows, "burgers", model, out, args, data, overrides)
        prepared[model] = task.model(model, data)[2][0]
        print(f"      {model}: held-out relative L2 {rows[-1]['value']:.3g}")
    plot_curves(runs, out / "train_burgers_curves.png", title="Burgers (64 points)")
    _plot_fields(trainers, prepared, data, out / "train_burgers_prediction.png")

    total = time.perf_counter() - start
    print(f"\nresults (backend {backend}, seed {args.seed}, {total:.0f} s in all)")
    print(f"{'task':<22} {'model':<10} {'held-out metric':<16} {'value':>10} {'epochs':>7} {'train s':>8}")
    for r in rows:
        epochs = "" if r["epochs"] is None else str(r["epochs"])
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        print(f"{r['task']:<22} {r['model']:<10} {r['metric']:<16} {r['value']:>10.4g} {epochs:>7} {secs:>8}")
    atomic_write_text(out / "results.json", json.dumps(
        {"backend": backend, "seed": args.seed, "seconds": total, "integrator_orders": orders,
         "gradient_mismatch": grad_err, "heat": heat, "rows": rows}, indent=2) + "\n")
    print(f"\nplots: {', '.join(sorted(p.name for p in out.glob('*.png')))}")
    return 0
