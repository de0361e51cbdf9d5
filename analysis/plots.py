"""Figures of the stability analysis (matplotlib, imported lazily; files written atomically)."""
import io
import math

import numpy as np

from kinn_ref.spec import INTEGRATORS

from .golden_store import atomic_write_bytes
from .stability import stability_function_numeric
from .stability_report import expeuler_split, jacobian_eigenvalues


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_stability_map(smap, path, chosen=None, title=""):
    """``log10`` of the spectral radius over (dt, conductance scale), one panel per integrator.

    The numeric contour ``rho = 1`` of the actual layer is dashed; the analytic ``dt_max`` at each scale is
    the white line; ``chosen`` = ``(dt, scale)`` is marked.
    """
    plt = _pyplot()
    names = list(smap.rho)
    cols = 2 if len(names) > 1 else 1
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.4 * rows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names):
        with np.errstate(divide="ignore"):
            z = np.log10(np.maximum(smap.rho[name], 1e-300))
        mesh = ax.pcolormesh(smap.dts, smap.scales, np.clip(z, -1, 1), cmap="RdBu_r", vmin=-1, vmax=1,
                             shading="auto")
        finite = np.isfinite(smap.boundary[name]) & (smap.boundary[name] > 0)
        if finite.any():
            ax.plot(smap.boundary[name][finite], smap.scales[finite], color="#00b050", lw=3.0, marker=".",
                    label="analytic dt_max")
        if np.nanmin(z) < 0 < np.nanmax(z):
            ax.plot([], [], color="k", ls="--", label="numeric rho = 1")
        if np.nanmin(z) < 0 < np.nanmax(z):   # drawn over the analytic line: they should coincide
            ax.contour(smap.dts, smap.scales, z, levels=[0.0], colors="k", linestyles="--", linewidths=1.2)
        if chosen is not None:
            ax.plot(*chosen, marker="*", color="gold", markersize=13, markeredgecolor="k", label="chosen")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(smap.dts[0], smap.dts[-1])
        ax.set_ylim(smap.scales[0], smap.scales[-1])
        ax.set_xlabel("dt (time step, in units of C / g)")
        ax.set_ylabel(f"{smap.target} conductance scale (factor on the layer's, dimensionless)")
        ax.set_title(name)
        ax.legend(loc="lower left", fontsize=8)
        fig.colorbar(mesh, ax=ax, label="log10 spectral radius (dimensionless; > 0 unstable)")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle((title + "\n" if title else "") + "log10 spectral radius of the amplification matrix "
                 "(clipped to [-1, 1]; red is unstable)")
    _save(fig, path)


def plot_stability_regions(spec, params, dt, path, title=""):
    """Stability regions ``|R(z)| <= 1`` of every integrator with the eigenvalues of ``dt J`` overlaid.

    For expeuler, ``R`` depends on the split of each node's conductance: the region drawn is that of
    ``R(w, z)`` at the layer's mean exactly integrated part ``w`` (``exp(z)`` for uncoupled cells); the
    verdict comes from the amplification matrix itself.
    """
    plt = _pyplot()
    eig = dt * jacobian_eigenvalues(spec, params)
    reach = max(3.2, 1.15 * float(np.max(np.abs(eig))) if eig.size else 3.2)
    xs = np.linspace(-reach, 0.35 * reach, 500)
    ys = np.linspace(-0.75 * reach, 0.75 * reach, 400)
    Z = xs[None, :] + 1j * ys[:, None]
    rows = math.ceil(len(INTEGRATORS) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(10.5, 4.25 * rows), squeeze=False, layout="constrained")
    for ax in list(axes.flat)[len(INTEGRATORS):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, INTEGRATORS):
        R = stability_function_numeric(name)
        label = name
        with np.errstate(all="ignore"):
            if name == "expeuler":
                if spec.coupling == "none":
                    mag = np.abs(np.exp(Z))
                    label = "expeuler (uncoupled: R = exp(z))"
                else:
                    w = expeuler_split(spec, params, dt)
                    mag = np.abs(R(w, Z)) if w != 0 else np.abs(1 + Z)
                    label = f"expeuler (w = {w:.3g})"
            else:
                mag = np.abs(R(Z))
        ax.contourf(xs, ys, (mag <= 1).astype(float), levels=[0.5, 1.5], colors=["#9ecae1"])
        ax.contour(xs, ys, mag, levels=[1.0], colors="#08519c", linewidths=1.2)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.plot(eig.real, eig.imag, "o", color="#d62728", markersize=4, label="dt * eigenvalues of J")
        ax.set_xlim(xs[0], xs[-1])
        ax.set_ylim(ys[0], ys[-1])
        ax.set_aspect("equal")
        ax.set_title(label)
        ax.set_xlabel("Re z, z = dt * eigenvalue (dimensionless)")
        ax.set_ylabel("Im z (dimensionless)")
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title or f"stability regions |R(z)| <= 1 (shaded), dt = {dt:g}")
    _save(fig, path)
