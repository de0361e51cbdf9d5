"""The trainer: learning, reproducibility, exact resume, checkpoint integrity."""
import json

import numpy as np
import pytest

from kinn_ref.training import CheckpointError, Trainer, load_checkpoint
from kinn_ref.training.metrics_log import read_metrics

CONFIG = {"model": "kinn", "input_dim": 3, "hidden_dims": [6], "output_dim": 2, "dt": 0.5, "n_steps": 4,
          "head": True, "seed": 1, "options": {"order": 2, "coupling": "kirchhoff"}}


def _data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    return x, np.stack([np.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 0]], axis=1)


def _trainer(tmp_path=None, **kw):
    kw = {"lr": 1e-2, "batch_size": 8, "progress": False, "seed": 5, "penalty": 1e-3, "clip_norm": 5.0,
          "schedule": {"kind": "cosine", "warmup_steps": 3}, **kw}
    return Trainer(CONFIG, out_dir=tmp_path, **kw)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_loss_decreases(optimizer):
    x, y = _data()
    recs = _trainer(optimizer=optimizer, lr=0.1 if optimizer == "sgd" else 3e-2, schedule=None).fit(x, y, 12)
    assert recs[-1]["train_loss"] < 0.6 * recs[0]["train_loss"]


def test_mlp_and_classification_learn():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 2))
    labels = (x[:, 0] * x[:, 1] > 0).astype(int)
    t = Trainer({"model": "mlp", "input_dim": 2, "hidden_dims": [16], "output_dim": 2}, loss="cross_entropy",
                lr=2e-2, batch_size=16, metrics=("accuracy",), progress=False)
    recs = t.fit(x, labels, 40, validation=(x, labels))
    assert recs[-1]["val_accuracy"] > 0.9


def test_same_seed_gives_identical_weights_and_other_seed_differs():
    x, y = _data()
    runs = [_trainer(seed=s) for s in (5, 5, 6)]
    for t in runs:
        t.fit(x, y, 3)
    p = [t.model.parameters() for t in runs]
    assert all(np.array_equal(p[0][k], p[1][k]) for k in p[0])
    assert any(not np.array_equal(p[0][k], p[2][k]) for k in p[0])


class _Stop(Exception):
    pass


def _stop_after(epoch):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise _Stop
    return callback


def test_resume_is_bitwise_exact(tmp_path):
    x, y = _data()
    full = _trainer(tmp_path / "full", guard=True)
    full.fit(x, y, 5, validation=(x[:8], y[:8]))
    part = _trainer(tmp_path / "part", guard=True)
    with pytest.raises(_Stop):
        part.fit(x, y, 5, validation=(x[:8], y[:8]), callback=_stop_after(2))
    resumed = _trainer(tmp_path / "part", guard=True)
    recs = resumed.fit(x, y, 5, validation=(x[:8], y[:8]), resume=True)
    a, b = full.model.parameters(), resumed.model.parameters()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert [r["epoch"] for r in recs] == [1, 2, 3, 4, 5]
    assert [r["train_loss"] for r in recs] == [r["train_loss"] for r in read_metrics(tmp_path / "full" /
                                                                                     "metrics.jsonl")]
    ckpt = load_checkpoint(tmp_path / "part" / "checkpoint.npz")
    assert ckpt.epoch == 5 and ckpt.config == CONFIG and len(ckpt.meta["sha256"]) == 64


def test_corrupt_checkpoint_is_rejected(tmp_path):
    x, y = _data()
    _trainer(tmp_path).fit(x, y, 1)
    path = tmp_path / "checkpoint.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad = tmp_path / "bad.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    bad.write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.npz")


def test_tampered_array_fails_the_digest(tmp_path):
    x, y = _data()
    _trainer(tmp_path).fit(x, y, 1)
    with np.load(tmp_path / "checkpoint.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/head.b"] = arrays["param/head.b"] + 1.0
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(tmp_path / "tampered.npz")


def test_mismatched_checkpoint_is_rejected(tmp_path):
    x, y = _data()
    _trainer(tmp_path).fit(x, y, 1)
    other = dict(CONFIG, hidden_dims=[7])
    with pytest.raises(CheckpointError, match="hidden_dims"):
        Trainer(other, progress=False, out_dir=tmp_path).fit(x, y, 2, resume=True)
    with pytest.raises(CheckpointError, match="batch_size"):
        _trainer(tmp_path, batch_size=4).fit(x, y, 2, resume=True)
    with pytest.raises(CheckpointError, match="data"):
        _trainer(tmp_path).fit(x + 1.0, y, 2, resume=True)


def test_metrics_file_is_json_lines(tmp_path):
    x, y = _data()
    _trainer(tmp_path, metrics=("relative_l2",)).fit(x, y, 2, validation=(x, y))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in recs] == [1, 2]
    assert {"train_loss", "val_loss", "val_relative_l2", "lr", "step", "penalty"} <= set(recs[0])


def test_plot_curves_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from kinn_ref.training.plots import plot_curves
    x, y = _data()
    recs = _trainer(metrics=("relative_l2",)).fit(x, y, 2, validation=(x, y))
    path = plot_curves({"kinn": recs}, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_atomic_write_replaces_and_uses_the_usual_permissions(tmp_path):
    import os
    from kinn_ref.training.atomic import atomic_write_text
    path = atomic_write_text(tmp_path / "a.txt", "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_save_checkpoint_never_writes_a_non_finite_value(tmp_path):
    from kinn_ref.training import save_checkpoint
    params = {"layers.0.g_raw": np.array([0.5, np.nan]), "head.b": np.zeros(2)}
    state = {"kind": "sgd", "hyperparameters": {}, "step_count": 1, "slots": {"momentum": {"head.b": np.zeros(2)}}}
    kw = dict(optimizer_state=state, config={}, epoch=3, rng_state={})
    with pytest.raises(ValueError, match=r"param/layers.0.g_raw holds 1 non-finite value\(s\) at epoch 3"):
        save_checkpoint(tmp_path / "a.npz", params=params, **kw)
    state["slots"]["momentum"]["head.b"] = np.array([np.inf, 0.0])
    with pytest.raises(ValueError, match="opt/momentum/head.b"):
        save_checkpoint(tmp_path / "a.npz", params={"head.b": np.zeros(2)}, **kw)
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temporaries_removes_only_what_atomic_write_leaves(tmp_path):
    from kinn_ref.training.atomic import remove_stale_temporaries
    stale = [tmp_path / ".checkpoint.npz.k2_9xq1a.tmp", tmp_path / ".checkpoint.npz.AbC.tmp"]
    kept = [tmp_path / "checkpoint.npz", tmp_path / ".metrics.jsonl.k2_9xq1a.tmp", tmp_path / "checkpoint.npz.tmp",
            tmp_path / ".checkpoint.npz..tmp", tmp_path / ".checkpoint.npz.a.b.tmp"]
    for p in stale + kept:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path / "checkpoint.npz")) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing" / "checkpoint.npz") == []
