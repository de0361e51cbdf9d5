"""``kinn-ref demo``: the tour of kinn_ref on a fresh install, in a few minutes on two cores.

1. the layer itself: each integrator's measured convergence order and a gradient check;
2. the heat equation solved by a KINN RC mesh against its exact Fourier solution (order 2 in dx);
   these two check the formulation, so they run on the NumPy reference (the specification in code; no
   compilation), whatever ``--backend`` says; ``kinn-ref golden verify --backend NAME`` checks a backend
   against the reference;
3. a damped oscillator learned by KINN cascades of order K = 1, 2, 3;
4. the 8x8 digits (when scikit-learn is installed): KINN against an MLP;
5. Burgers operator learning at reduced size: KINN against an MLP trained by the same trainer.

Every learned task stands beside its no-learning baselines (the task's ``baselines``, computed on the
same held-out set in the same run), and each learned row says whether it beats all of them. Timing is
split in two columns: ``compile s`` is one forward and backward pass of the fresh model on one batch
before training (:func:`~kinn_ref.tasks.run.first_step_seconds`: numba compiles its kernels there, or
loads them from its cache), ``train s`` the training epochs afterwards with their held-out evaluations.

It prints a results table and writes plots, metrics and ``results.json`` under ``--out``.
"""
import importlib.util
import json
import time

import numpy as np

from .. import LayerSpec, backward, forward, init_params
from .._checks import check_seed
from ..linear_analysis import exact_states
from ..spec import INTEGRATORS
from .output import add_output_argument, default_out, prepare_output_dir, run_files

#: Steps 1 and 2 check the formulation itself: on the reference, which needs no compilation.
CHECKS_BACKEND = "numpy"

#: Step 2: (dimension, boundary, points per axis) of each heat-equation check.
HEAT_CASES = ((1, "dirichlet", 32), (2, "neumann", 24))

#: Steps 3-5: each learned task, its models (None: all of the task's) and the plots drawn of it.
LEARNED_TASKS = (("oscillator", None, ("curves", "prediction")), ("digits", None, ("curves",)),
                 ("burgers", ("kinn", "mlp"), ("curves", "prediction")))

#: ``(task, model)`` trained in a second process while the main one runs the rest of the tour (the
#: longest run; numba backend, two cores or more: :mod:`kinn_ref.tasks.background`). It trains to the
#: same bits there as here.
SECOND_PROCESS_RUNS = (("burgers", "kinn"),)


def _heat_plot(dim, boundary):
    return f"pde_heat_{dim}d_{boundary}.png"


def _task_plot(task_name, plot):
    return f"train_{task_name}_{plot}.png"


def _models(task_name):
    from ..tasks.registry import get_task
    models = {name: models for name, models, _ in LEARNED_TASKS}[task_name]
    return models or tuple(get_task(task_name).models)


def _digits_available():
    return importlib.util.find_spec("sklearn") is not None


def output_files(digits=True):
    """Every file the demo writes into ``--out``: the results, the plots and one run folder per model.

    Parameters
    ----------
    digits : bool
        Whether the digits task runs (it needs scikit-learn).

    Returns
    -------
    list of str
    """
    names = ["results.json"] + [_heat_plot(dim, boundary) for dim, boundary, _ in HEAT_CASES]
    for task_name, _, plots in LEARNED_TASKS:
        if task_name == "digits" and not digits:
            continue
        names += [f"{task_name}-{model}/{name}" for model in _models(task_name) for name in run_files()]
        names += [_task_plot(task_name, plot) for plot in plots]
    return names


def add_arguments(parser):
    add_output_argument(parser, "--out", default=default_out("demo"),
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
#: What each metric measures, in words (the table's ``measured`` column).
MEASURED = {"relative_l2": "relative L2 error, held out", "accuracy": "accuracy, held out",
            "max_error": "max abs error vs exact"}


def _plot_sequences(trainers, data, path):
    from ..training.plots import pyplot, save_figure
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
    x, y = data.x_test[:1], data.y_test[0, :, 0]
    dt = data.info.get("dt", 0.1)
    t = np.arange(1, len(y) + 1) * dt
    ax.plot(t, x[0, :, 0], color="0.7", label="input u")
    ax.plot(t, y, "k", lw=2, label="target y")
    for name, tr in trainers.items():
        ax.plot(t, tr.predict(x)[0, :, 0], "--", label=name)
    ax.set_xlabel(f"t (time units of the ODE, omega = {data.info.get('omega', 1.5):g} rad per unit; dt = {dt:g})")
    ax.set_ylabel("u, y (dimensionless)")
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("damped oscillator, held-out sequence")
    return save_figure(fig, path)


def _plot_fields(trainers, prepared, data, path):
    """Left: u(x, 0) and u(x, 1); right: u(x, 1) minus the conserved mean, the part a model must learn."""
    from ..training.plots import pyplot, save_figure
    from ..tasks.burgers import reference_predictions
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    info = data.info
    length = info.get("length", 1.0)
    x = np.arange(data.x_test.shape[1]) * length / data.x_test.shape[1]
    mean = data.x_test[0].mean()
    heat = reference_predictions(data.x_test[:1], info.get("t_end", 1.0), info.get("nu", 0.1), length)["heat"][0]
    axes[0].plot(x, data.x_test[0], color="0.6", label="u(x, 0)")
    axes[0].plot(x, data.y_test[0], "k", lw=2, label="u(x, 1)")
    axes[1].plot(x, data.y_test[0] - mean, "k", lw=2, label="u(x, 1) - mean")
    axes[1].plot(x, heat - mean, ":", color="0.4", label="linear heat eq. - mean (no learning)")
    for name, tr in trainers.items():
        pred = tr.predict(prepared[name][:1]).reshape(-1)
        axes[0].plot(x, pred, "--", label=name)
        axes[1].plot(x, pred - mean, "--", label=name)
    for ax in axes:
        ax.set_xlabel(f"x (periodic, length L = {length:g}, dimensionless)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("u (dimensionless)")
    axes[1].set_ylabel("u - mean of u(x, 0) (dimensionless)")
    axes[1].set_title("deviation from the conserved mean", fontsize=10)
    fig.suptitle("Burgers, a held-out initial condition")
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the table
def _better(metric, a, b):
    """Whether value ``a`` of ``metric`` is better than ``b`` (accuracy: higher; errors: lower)."""
    return a > b if metric == "accuracy" else a < b


def _row(rows, task, model, metric, value, kind, epochs=None, compile_seconds=None, train_seconds=None):
    rows.append({"task": task, "model": model, "kind": kind, "metric": metric, "measured": MEASURED[metric],
                 "value": float(value), "epochs": epochs, "compile_seconds": compile_seconds,
                 "train_seconds": train_seconds, "beats_baselines": None})


def _baseline_rows(rows, task, data):
    """Add the task's no-learning baselines and mark each learned row of ``task`` against them."""
    scores = task.baseline_scores(data)
    for label, value in scores.items():
        _row(rows, task.name, label, task.metric, value, "baseline")
    for r in rows:
        if r["task"] == task.name and r["kind"] == "learned":
            r["beats_baselines"] = all(_better(task.metric, r["value"], v) for v in scores.values())
    return scores


def _train(rows, task, model, size, out, args, data, overrides):
    from ..tasks.run import train_task
    result, records, trainer = train_task(task.name, model, size=size, seed=args.seed, backend=args.backend,
                                          out_dir=out / f"{task.name}-{model}", dataset=data, progress=True,
                                          **overrides)
    _row(rows, task.name, model, result["metric"], result["value"], "learned", result["epochs"],
         result["compile_seconds"], result["train_seconds"])
    return records, trainer


def _second_process_jobs(out, args, overrides):
    """The :class:`~kinn_ref.tasks.background.BackgroundWarmUp` ``train`` jobs of :data:`SECOND_PROCESS_RUNS`."""
    jobs = []
    for t, m in SECOND_PROCESS_RUNS:
        size, data_size = _sizes(t, args.quick)
        jobs.append({"task": t, "model": m, "size": size, "data_size": data_size, "seed": args.seed,
                     "out_dir": str(out / f"{t}-{m}"), "overrides": overrides})
    return jobs


def _sizes(task_name, quick):
    """``(settings size, data size)`` each learned task trains with (steps 3-5)."""
    return {"digits": ("full", "full"), "burgers": ("small", "smoke" if quick else "small")}.get(
        task_name, ("small", "small"))


def _train_models(rows, task, out, args, data, overrides, warm):
    """Train every model of ``task`` (step 3-5), the runs of the second process last, collected from it;
    rows in the task's model order. Returns ``{model: (records, trainer)}``."""
    from ..tasks.run import load_trained
    size = _sizes(task.name, args.quick)[0]
    models = _models(task.name)
    order = sorted(models, key=lambda m: warm.trains(task.name, m))
    runs, task_rows = {}, {}
    for model in order:
        here = []
        if warm.trains(task.name, model):
            finished, seconds = warm.wait_trained(task.name, model)
            if finished:
                result, records, trainer = load_trained(task.name, model, out / f"{task.name}-{model}", size=size,
                                                        seed=args.seed, backend=args.backend, dataset=data,
                                                        **overrides)
                _row(here, task.name, model, result["metric"], result["value"], "learned", result["epochs"],
                     result["compile_seconds"], result["train_seconds"])
                runs[model] = (records, trainer)
                print(f"      {model}: trained in the second process" +
                      (f" (waited {seconds:.1f} s for it)" if seconds >= 0.5 else ""))
            else:
                print(f"      {model}: the second process stopped ({warm.failure}); training it here")
        if model not in runs:
            runs[model] = _train(here, task, model, size, out, args, data, overrides)
        task_rows[model] = here[0]
        metric = here[0]["metric"]
        value = f"{here[0]['value']:.4f}" if metric == "accuracy" else f"{here[0]['value']:.3g}"
        print(f"      {model}: held-out {MEASURED[metric].split(',')[0]} {value}")
    rows += [task_rows[m] for m in models]
    return {m: runs[m] for m in models}


def _verdict(rows, task, scores):
    """One line per learned row: beats every baseline, or which baseline is better (printed plainly)."""
    lines = []
    for r in rows:
        if r["task"] != task.name or r["kind"] != "learned":
            continue
        better = [f"{k[len('no learning: '):] if k.startswith('no learning: ') else k} ({v:.4g})"
                  for k, v in scores.items() if not _better(task.metric, r["value"], v)]
        if not better:
            lines.append(f"      {r['model']} ({r['value']:.4g}) beats every no-learning baseline")
        else:
            lines.append(f"      {r['model']} ({r['value']:.4g}) does NOT beat the no-learning "
                         f"{', '.join(better)}")
    return lines


def format_table(rows):
    """The results table as text: one line per row, the learned rows with their two timings.

    Parameters
    ----------
    rows : list of dict
        As written to ``results.json`` (``task``, ``model``, ``measured``, ``value``, ``epochs``,
        ``compile_seconds``, ``train_seconds``, ``beats_baselines``).

    Returns
    -------
    str
    """
    def cell(v, fmt):
        return "" if v is None else format(v, fmt)

    width = max([len(r["model"]) for r in rows] + [5])
    head = (f"{'task':<18} {'model':<{width}} {'measured':<28} {'value':>9} {'epochs':>6} {'compile s':>9} "
            f"{'train s':>8}  beats no-learning")
    lines = [head, "-" * len(head)]
    for r in rows:
        beats = {None: "", True: "yes", False: "NO"}[r["beats_baselines"]]
        lines.append(f"{r['task']:<18} {r['model']:<{width}} {r['measured']:<28} {r['value']:>9.4g} "
                     f"{cell(r['epochs'], 'd'):>6} {cell(r['compile_seconds'], '.2f'):>9} "
                     f"{cell(r['train_seconds'], '.1f'):>8}  {beats}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run
def run(args):
    from ..backends import resolve
    from ..tasks.background import BackgroundWarmUp

    check_seed("--seed", args.seed)
    start = time.perf_counter()
    backend = resolve(args.backend)
    args.backend = backend
    digits = _digits_available()
    out = prepare_output_dir(args.out, files=output_files(digits))
    print(f"kinn-ref demo on backend {backend!r}; output in {out}/")
    overrides = {"epochs": 2} if args.quick else {}
    with BackgroundWarmUp(backend, [], train=_second_process_jobs(out, args, overrides)) as warm:
        if warm.train:
            print("      (" + ", ".join(f"the {t} {m.upper() if m == 'kinn' else m}" for t, m in SECOND_PROCESS_RUNS)
                  + " trains in a second process meanwhile)")
        return _tour(args, backend, out, start, warm, digits, overrides)


def _tour(args, backend, out, start, warm, digits, overrides):
    from ..tasks.heat_check import convergence_in_space, mode_error
    from ..tasks.registry import get_task
    from ..training.atomic import atomic_write_text
    from ..training.plots import plot_curves
    from .solve_pde import plot_solution

    rows, baselines, verdicts = [], {}, []

    print("\n[1/5] the KINN layer: convergence order of each integrator (cascade K=2, dense coupling; "
          "NumPy reference)")
    orders = {name: integrator_order(name, args.seed, CHECKS_BACKEND) for name in INTEGRATORS}
    print("      " + "  ".join(f"{k} {v:.2f}" for k, v in orders.items()) + "   (expected 1, 1, 1, 4)")
    grad_err = gradient_error(args.seed, CHECKS_BACKEND)
    print(f"      gradients against central differences: worst relative mismatch {grad_err:.1e}")

    print("\n[2/5] heat equation on a KINN RC mesh (implicit, exact Fourier solution as reference; NumPy "
          "reference)")
    heat = {}
    for dim, boundary, points in HEAT_CASES:
        err, sol, ref = mode_error(boundary, dim, points, 1e-3, 0.1, 1.0, "implicit", CHECKS_BACKEND)
        dxs, errors, order = convergence_in_space(boundary, dim, backend=CHECKS_BACKEND)
        plot_solution(sol, ref, out / _heat_plot(dim, boundary),
                      f"heat, {dim}-D {boundary}, {points} nodes per axis, max abs error {err:.1e}")
        heat[f"{dim}d-{boundary}"] = {"max_error": err, "order_dx": order}
        print(f"      {dim}-D {boundary:<9} max abs error {err:.2e}   order in dx {order:.2f} (expected 2)")
        _row(rows, f"heat {dim}-D {boundary}", f"RC mesh, implicit, dt = 1e-3, {points} nodes/axis",
             "max_error", err, "solver")

    print("\n[3/5] damped oscillator: KINN cascades of order K = 1, 2, 3")
    task = get_task("oscillator")
    data = task.make_data(_sizes(task.name, args.quick)[1], args.seed)
    trained = _train_models(rows, task, out, args, data, overrides, warm)
    runs, trainers = {m: r for m, (r, _) in trained.items()}, {m: t for m, (_, t) in trained.items()}
    baselines["oscillator"] = _baseline_rows(rows, task, data)
    verdicts += ["oscillator:"] + _verdict(rows, task, baselines["oscillator"])
    plot_curves(runs, out / _task_plot(task.name, "curves"), title="damped oscillator", loss_name=task.loss)
    _plot_sequences(trainers, data, out / _task_plot(task.name, "prediction"))

    print("\n[4/5] 8x8 digits: KINN against an MLP")
    if not digits:
        print("      skipped: scikit-learn is not installed (python -m pip install 'kinn-ref[digits]')")
    else:
        task = get_task("digits")
        data = task.make_data(_sizes(task.name, args.quick)[1], args.seed)
        runs = {m: r for m, (r, _) in _train_models(rows, task, out, args, data, overrides, warm).items()}
        baselines["digits"] = _baseline_rows(rows, task, data)
        verdicts += ["digits:"] + _verdict(rows, task, baselines["digits"])
        plot_curves(runs, out / _task_plot(task.name, "curves"), title="8x8 digits", loss_name=task.loss)

    task = get_task("burgers")
    data = task.make_data(_sizes(task.name, args.quick)[1], args.seed)
    resolution = data.x_train.shape[1]
    print(f"\n[5/5] Burgers u(x,0) -> u(x,1) at {resolution} points, {len(data.x_train)} training pairs: "
          "KINN against an MLP")
    trained = _train_models(rows, task, out, args, data, overrides, warm)
    runs, trainers = {m: r for m, (r, _) in trained.items()}, {m: t for m, (_, t) in trained.items()}
    prepared = {m: task.model(m, data)[2][0] for m in trained}
    baselines["burgers"] = _baseline_rows(rows, task, data)
    verdicts += ["burgers:"] + _verdict(rows, task, baselines["burgers"])
    plot_curves(runs, out / _task_plot(task.name, "curves"), title=f"Burgers ({resolution} points)",
                loss_name=task.loss, baselines=baselines["burgers"])
    _plot_fields(trainers, prepared, data, out / _task_plot(task.name, "prediction"))

    total = time.perf_counter() - start
    print(f"\nresults (backend {backend}, seed {args.seed}, {total:.0f} s in all)")
    print(format_table(rows))
    print("compile s: one forward + backward of the fresh model on one batch before training (numba's JIT\n"
          "compilation, or loading it from its cache); train s: all epochs after it, held-out evaluation included.")
    for t, m in sorted(warm.trained):
        print(f"{t} {m} trained in a second process beside the rest of the tour (its train s overlaps theirs)")
    print("against the no-learning baselines (same held-out data, same run):")
    print("\n".join(verdicts))
    atomic_write_text(out / "results.json", json.dumps(
        {"backend": backend, "checks_backend": CHECKS_BACKEND, "seed": args.seed, "quick": bool(args.quick), "seconds": total,
         "background_compile_seconds": {f"{t}-{m}": v for (t, m), v in warm.seconds.items()},
         "second_process_runs": sorted(f"{t}-{m}" for t, m in warm.trained),
         "waited_for_background_seconds": warm.waited,
         "integrator_orders": orders, "gradient_mismatch": grad_err, "heat": heat, "baselines": baselines,
         "rows": rows}, indent=2) + "\n")
    print(f"\nplots: {', '.join(sorted(p.name for p in out.glob('*.png')))}")
    return 0
