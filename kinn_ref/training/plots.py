"""Loss and metric curves as PNG (matplotlib is imported here, lazily, never by ``import kinn_ref``)."""
import io

from .atomic import atomic_write


def save_figure(fig, path, dpi=110):
    """Save a matplotlib figure to ``path`` (PNG) atomically and close it."""
    import matplotlib.pyplot as plt
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


#: Axis labels of the metrics the trainer logs, with what they measure.
METRIC_LABELS = {"relative_l2": "relative L2 error, held out (dimensionless)",
                 "accuracy": "accuracy, held out (fraction correct)",
                 "mse": "mean squared error, held out (target units squared)"}

#: Axis labels of the training losses.
LOSS_LABELS = {"relative_l2": "relative L2 loss (dimensionless)", "mse": "MSE loss (target units squared)",
               "cross_entropy": "cross-entropy loss (nats)"}


def plot_curves(runs, path, title="", loss_name=None, baselines=None):
    """Plot training curves of one or more runs: losses on the left, validation metrics on the right.

    Parameters
    ----------
    runs : dict of str -> list of dict
        Label -> epoch records (as written by :class:`~kinn_ref.training.metrics_log.MetricsLog`).
    path : str or Path
        PNG file to write.
    title : str
    loss_name : str, optional
        The training loss (``"mse"``, ``"relative_l2"``, ``"cross_entropy"``), named on the loss axis.
    baselines : dict of str -> float, optional
        Held-out values of no-learning predictors, drawn as horizontal lines on the metric panel.
    """
    plt = pyplot()
    metric_keys = sorted({k for recs in runs.values() for r in recs for k in r
                          if k.startswith("val_") and k != "val_loss"})
    ncols = 2 if metric_keys else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.8), squeeze=False, layout="constrained")
    ax = axes[0, 0]
    for label, recs in runs.items():
        epochs = [r["epoch"] for r in recs]
        line, = ax.semilogy(epochs, [r["train_loss"] for r in recs], label=f"{label} train")
        if any("val_loss" in r for r in recs):
            ax.semilogy(epochs, [r.get("val_loss") for r in recs], "--", color=line.get_color(),
                        label=f"{label} held-out")
    ax.set_xlabel("epoch (passes over the training set)")
    ax.set_ylabel(LOSS_LABELS.get(loss_name, f"{loss_name} loss" if loss_name else "training loss (dimensionless)"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if metric_keys:
        ax = axes[0, 1]
        for label, recs in runs.items():
            for key in metric_keys:
                if any(key in r for r in recs):
                    ax.plot([r["epoch"] for r in recs], [r.get(key) for r in recs], label=f"{label} {key[4:]}")
        for i, (label, value) in enumerate((baselines or {}).items()):
            ax.axhline(value, color="0.35", lw=1, ls=(0, (1 + 2 * i, 2)), label=label)
        ax.set_xlabel("epoch (passes over the training set)")
        names = {k[4:] for k in metric_keys}
        ax.set_ylabel(METRIC_LABELS[names.pop()] if len(names) == 1 and names <= set(METRIC_LABELS)
                      else "held-out metric")
        if not any("accuracy" in k for k in metric_keys):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
