"""``kinn-ref demo``: integrate a second-order KINN cascade with every integrator, measure each one's
convergence order against the exact matrix-exponential solution, its largest stable ``dt``, and check the
hand-derived gradients against central differences."""
import numpy as np

from .. import LayerSpec, backward, forward, init_params
from ..linear_analysis import exact_states, max_stable_dt
from ..spec import INTEGRATORS


def add_arguments(parser):
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--nodes", type=int, default=4, help="nodes per cell (default 4)")


def _case(integrator, dt, n_steps, nodes, seed):
    spec = LayerSpec(3, nodes, order=2, coupling="dense", integrator=integrator, dt=dt, n_steps=n_steps,
                     readout="cells")
    rng = np.random.default_rng(seed)
    params = init_params(spec, seed=rng)
    params["leak"] = 0.2 * rng.standard_normal(params["leak"].shape)
    x = rng.standard_normal((2, 3))
    return spec, params, x


def convergence_row(integrator, nodes, seed, t_end=1.0):
    """Errors at t_end for dt = t_end/8 .. t_end/64 and the fitted log-log slope."""
    errors, dts = [], []
    for n in (8, 16, 32, 64):
        spec, params, x = _case(integrator, t_end / n, n, nodes, seed)
        y, _ = forward(spec, params, x)
        exact = exact_states(spec, params, x, None, [t_end])[0].reshape(y.shape)
        errors.append(np.linalg.norm(y - exact) / np.linalg.norm(exact))
        dts.append(t_end / n)
    slope = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    spec, params, _ = _case(integrator, 0.1, 1, nodes, seed)
    return errors, slope, max_stable_dt(spec, params)


def gradient_error(nodes, seed, eps=1e-6):
    """Worst relative mismatch of directional derivatives, over every parameter and the input."""
    spec, params, x = _case("expeuler", 0.1, 10, nodes, seed)
    y, tape = forward(spec, params, x)
    rng = np.random.default_rng(seed + 1)
    w = rng.standard_normal(y.shape)
    grads = backward(spec, params, tape, w)
    worst = 0.0
    for name in list(params) + ["x"]:
        base = x if name == "x" else params[name]
        d = rng.standard_normal(base.shape)
        vals = []
        for sign in (1, -1):
            p = dict(params)
            xx = x
            if name == "x":
                xx = x + sign * eps * d
            else:
                p[name] = base + sign * eps * d
            vals.append(np.sum(w * forward(spec, p, xx)[0]))
        fd = (vals[0] - vals[1]) / (2 * eps)
        worst = max(worst, abs(fd - np.sum(grads[name] * d)) / max(1.0, abs(fd)))
    return worst


def run(args):
    print("KINN cascade (K=2, dense coupling): error at t=1 against the exact solution")
    print(f"{'integrator':<10} {'dt=1/8':>10} {'dt=1/16':>10} {'dt=1/32':>10} {'dt=1/64':>10} "
          f"{'order':>6} {'dt_max':>9}")
    for name in INTEGRATORS:
        errors, slope, dt_max = convergence_row(name, args.nodes, args.seed)
        print(f"{name:<10} " + " ".join(f"{e:10.2e}" for e in errors) + f" {slope:6.2f} {dt_max:9.4g}")
    print(f"gradient check (expeuler, all parameters and x): worst relative mismatch "
          f"{gradient_error(args.nodes, args.seed):.1e}")
    return 0
