"""The command line: demo (smoke-test sizes), train with resume, solve-pde."""
import json

import numpy as np
import pytest

from kinn_ref.cli import main
from kinn_ref.training import load_checkpoint


def test_demo_quick_writes_table_plots_and_results(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["demo", "--quick", "--backend", "numpy", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "results (backend numpy" in out and "burgers" in out and "oscillator" in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert abs(results["integrator_orders"]["rk4"] - 4) < 0.3 and results["gradient_mismatch"] < 1e-7
    assert all(abs(h["order_dx"] - 2) < 0.1 for h in results["heat"].values())
    for name in ("pde_heat_1d_dirichlet.png", "train_oscillator_curves.png", "train_burgers_prediction.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    header = next(line for line in out.splitlines() if line.startswith("task "))
    assert "compile s" in header and "train s" in header and "measured" in header
    assert "relative L2 error, held out" in out and "max abs error vs exact" in out
    assert "no learning: linear heat eq." in out and "no learning: conserved mean" in out
    rows = results["rows"]
    tasks = {r["task"] for r in rows if r["kind"] == "learned"}
    assert {"burgers", "oscillator"} <= tasks
    for task in tasks:   # every learned task stands beside its baselines, marked against them
        assert any(r["task"] == task and r["kind"] == "baseline" for r in rows)
        for r in rows:
            if r["task"] == task and r["kind"] == "learned":
                assert isinstance(r["beats_baselines"], bool)
                assert r["compile_seconds"] > 0 and r["train_seconds"] > 0
    burgers = results["baselines"]["burgers"]
    assert len(burgers) == 2 and all(0 < v < 1 for v in burgers.values())
    assert "does NOT beat" in out or "beats every no-learning baseline" in out


def test_demo_run_trained_in_the_second_process_equals_one_trained_here(tmp_path, capsys, monkeypatch):
    """The Burgers KINN trained beside the tour (numba, two cores) gives the rows, records and parameters of
    the same run trained in the main process."""
    pytest.importorskip("matplotlib")
    from kinn_ref.backends import available_backends
    from kinn_ref.tasks import background
    if "numba" not in available_backends():
        pytest.skip("numba backend not usable here")
    monkeypatch.setattr(background, "second_core_available", lambda: True)
    assert main(["demo", "--quick", "--backend", "numba", "--out", str(tmp_path / "beside")]) == 0
    assert "kinn: trained in the second process" in capsys.readouterr().out
    monkeypatch.setattr(background, "second_core_available", lambda: False)
    assert main(["demo", "--quick", "--backend", "numba", "--out", str(tmp_path / "here")]) == 0
    assert "second process" not in capsys.readouterr().out
    beside, here = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("beside", "here"))
    assert beside["second_process_runs"] == ["burgers-kinn"] and here["second_process_runs"] == []
    key = ("task", "model", "kind", "value", "epochs")
    assert [tuple(r[k] for k in key) for r in beside["rows"]] == [tuple(r[k] for k in key) for r in here["rows"]]
    a, b = (load_checkpoint(tmp_path / d / "burgers-kinn" / "checkpoint.npz") for d in ("beside", "here"))
    assert set(a.params) == set(b.params) and all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert ((tmp_path / "beside" / "burgers-kinn" / "metrics.jsonl").read_text().count("\n") ==
            (tmp_path / "here" / "burgers-kinn" / "metrics.jsonl").read_text().count("\n") == 2)


def test_curves_name_their_axes_and_draw_the_baselines(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from kinn_ref.training import plots
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    records = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_relative_l2": 0.5 / e} for e in (1, 2)]
    plots.plot_curves({"kinn": records}, tmp_path / "c.png", loss_name="relative_l2", baselines={"heat": 0.3})
    loss_ax, metric_ax = figures[0].axes
    assert figures[0].get_layout_engine() is not None
    assert "epoch" in loss_ax.get_xlabel() and "relative L2 loss" in loss_ax.get_ylabel()
    assert metric_ax.get_ylabel().startswith("relative L2 error, held out")
    assert "heat" in [t.get_text() for t in metric_ax.get_legend().get_texts()]


def test_train_interrupted_and_resumed_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    from kinn_ref.training.trainer import Trainer
    common = ["train", "--task", "oscillator", "--model", "kinn-k2", "--backend", "numpy", "--no-progress",
              "--lr", "0.05", "--epochs", "4"]
    assert main(common + ["--out", str(tmp_path / "full")]) == 0
    save = Trainer.save

    def interrupt_after_epoch_2(self, path, run_config=None):
        save(self, path, run_config)
        if self.epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", interrupt_after_epoch_2)
    assert main(common + ["--out", str(tmp_path / "part")]) == 130
    assert "the last checkpoint is" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "part" / "checkpoint.npz").epoch == 2
    monkeypatch.setattr(Trainer, "save", save)
    assert main(common + ["--out", str(tmp_path / "part"), "--resume"]) == 0
    full = load_checkpoint(tmp_path / "full" / "checkpoint.npz")
    again = load_checkpoint(tmp_path / "part" / "checkpoint.npz")
    assert again.epoch == 4 and all(np.array_equal(full.params[k], again.params[k]) for k in full.params)
    assert "held-out relative_l2" in capsys.readouterr().out
    (tmp_path / "part" / "checkpoint.npz").write_bytes(b"not a checkpoint")
    assert main(common + ["--out", str(tmp_path / "part"), "--resume"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_solve_pde_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["solve-pde", "--boundary", "periodic", "--points", "16", "--backend", "numpy",
                 "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["max_error"] < 1e-2 and abs(result["space_order"] - 2) < 0.1
    assert "slope" in capsys.readouterr().out
