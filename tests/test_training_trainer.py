"""The trainer: learning, reproducibility, exact resume, checkpoint integrity."""
import json

import numpy as np
import pytest

import kinn_ref as kr
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


_NAN = float("nan")


@pytest.mark.parametrize("kw, name", [
    ({"penalty": _NAN}, "penalty"), ({"penalty": float("inf")}, "penalty"), ({"penalty": -1.0}, "penalty"),
    ({"clip_norm": _NAN}, "clip_norm"), ({"clip_norm": 0.0}, "clip_norm"),
    ({"lr": _NAN}, "lr"), ({"lr": float("inf")}, "lr"),
    ({"optimizer_options": {"weight_decay": _NAN}}, "weight_decay"),
    ({"optimizer": "adamw", "optimizer_options": {"weight_decay": float("inf")}}, "weight_decay"),
    ({"optimizer": "sgd", "optimizer_options": {"momentum": _NAN}}, "momentum"),
    ({"optimizer_options": {"betas": (0.9, _NAN)}}, r"betas\[1\]"),
    ({"optimizer_options": {"momentum": 0.9}}, "optimizer_options"),
    ({"optimizer_options": 0.9}, "optimizer_options"),
    ({"schedule": {"kind": "cosine", "warmup_fraction": _NAN}}, "warmup_fraction"),
    ({"schedule": {"kind": "cosine", "warmup_fraction": 1.0}}, "warmup_fraction"),
    ({"schedule": {"kind": "cosine", "warmup_steps": -1}}, "warmup_steps"),
    ({"schedule": {"kind": "cosine", "min_lr": _NAN}}, "min_lr"),
    ({"schedule": {"kind": "step", "step_size": 5, "gamma": _NAN}}, "gamma"),
    ({"schedule": {"kind": "step"}}, "step_size"),
    ({"schedule": {"kind": "exponential"}}, "kind"), ({"schedule": "cosine"}, "schedule"),
    ({"schedule": {"lr": 0.1}}, r"schedule must have a 'kind', one of \['constant', 'cosine', 'step'\]"),
    ({"schedule": {"kind": ["cosine"]}}, r"schedule\['kind'\] must be one of \['constant', 'cosine', 'step'\]"),
    ({"schedule": {"kind": "cosine", "total_steps": "a", "warmup_fraction": 0.5}},
     r"schedule\['total_steps'\] must be an integer >= 1"),
    ({"schedule": {"kind": "step", "step_size": 0}}, r"schedule 'step': step_size must be an integer >= 1"),
    ({"batch_size": 0}, "batch_size"), ({"checkpoint_every": 0}, "checkpoint_every"),
    ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"guard": "yes"}, "guard"),
    ({"metrics": "accuracy"}, "metrics"),
])
def test_trainer_checks_every_setting_at_construction(kw, name):
    kw = {"schedule": None, **kw}
    with pytest.raises(ValueError, match=name):
        _trainer(**kw)


def _poison(trainer, at_call, name, value):
    """Make the model's gradient of ``name`` equal ``value`` from its ``at_call``-th gradients() call on."""
    gradients, calls = trainer.model.gradients, [0]

    def poisoned():
        grads = gradients()
        calls[0] += 1
        if calls[0] >= at_call:
            grads[name] = np.full_like(grads[name], value)
        return grads

    trainer.model.gradients = poisoned


def test_a_non_finite_gradient_stops_the_run_before_the_update_and_the_save(tmp_path):
    """The issue's case: a NaN reaches g_raw's gradient in epoch 2; the error names the parameter, epoch
    and step, the parameters are those before the step, and the epoch-1 checkpoint is the last one."""
    from kinn_ref.training import NonFiniteTrainingError
    x, y = _data()
    trainer = _trainer(tmp_path)
    _poison(trainer, 8, "layers.0.g_raw", np.nan)      # 6 steps per epoch: the 2nd step of epoch 2
    before = {}

    def remember(t, record):
        before.update({k: v.copy() for k, v in t.model.parameters().items()})

    with pytest.raises(NonFiniteTrainingError, match=r"gradient of 'layers.0.g_raw' holds 12 non-finite "
                                                      r"value\(s\) at epoch 2, optimizer step 8") as info:
        trainer.fit(x, y, 3, callback=remember)
    assert (info.value.epoch, info.value.step, trainer.optimizer.step_count) == (2, 8, 7)
    ckpt = load_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.epoch == 1 and all(np.all(np.isfinite(v)) for v in ckpt.params.values())
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]
    params = trainer.model.parameters()
    assert all(np.all(np.isfinite(v)) for v in params.values())                     # step 8 was not applied
    assert any(not np.array_equal(before[k], v) for k, v in params.items())         # step 7 was


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_a_parameter_that_an_update_makes_infinite_is_named_and_not_saved(tmp_path):
    from kinn_ref.training import NonFiniteTrainingError
    x, y = _data()
    trainer = _trainer(tmp_path, optimizer="sgd", optimizer_options={"momentum": 0.0}, clip_norm=None,
                       lr=1e160, schedule=None)
    _poison(trainer, 1, "head.b", 1e150)                # finite gradient, finite norm, infinite update
    with pytest.raises(NonFiniteTrainingError, match="parameter 'head.b' holds 2 non-finite value.* at epoch 1, "
                                                      "optimizer step 1"):
        trainer.fit(x, y, 2)
    assert not (tmp_path / "checkpoint.npz").exists()
    trainer.optimizer.slots["momentum"]["head.b"][...] = np.inf
    with pytest.raises(NonFiniteTrainingError, match="parameter 'head.b'"):
        trainer.save(tmp_path / "checkpoint.npz")
    trainer.model.parameters()["head.b"][...] = 0.0
    with pytest.raises(NonFiniteTrainingError, match="optimizer state 'momentum' of 'head.b'.* not written"):
        trainer.save(tmp_path / "checkpoint.npz")
    assert not (tmp_path / "checkpoint.npz").exists()


def test_resume_with_fewer_epochs_than_the_checkpoint_is_refused_and_leaves_the_trainer_as_it_was(tmp_path):
    x, y = _data()
    _trainer(tmp_path).fit(x, y, 2)
    fresh = _trainer(tmp_path)
    init = {k: v.copy() for k, v in fresh.model.parameters().items()}
    with pytest.raises(ValueError, match=r"epochs must be >= 2: the checkpoint .* is at epoch 2 \(got epochs=1\)"):
        fresh.fit(x, y, 1, resume=True)
    assert fresh.epoch == 0 and fresh.optimizer.step_count == 0
    assert all(np.array_equal(init[k], v) for k, v in fresh.model.parameters().items())


def test_a_shortened_resume_warns_like_the_train_command(tmp_path):
    x, y = _data()
    with pytest.raises(_Stop):
        _trainer(tmp_path).fit(x, y, 4, callback=_stop_after(2))
    resumed = _trainer(tmp_path)
    with pytest.warns(UserWarning, match=r"shortened the run in .*checkpoint.npz from 4 to 3 epochs"):
        recs = resumed.fit(x, y, 3, resume=True)
    assert [r["epoch"] for r in recs] == [1, 2, 3] and resumed.extended_from == 4


def test_fit_again_continues_the_trainer_or_refuses_a_smaller_total():
    x, y = _data()
    trainer = _trainer()
    trainer.fit(x, y, 2)
    with pytest.raises(ValueError, match="epochs must be >= 2: this trainer has trained 2 epochs"):
        trainer.fit(x, y, 1)
    with pytest.warns(UserWarning, match="has finished its 2 epochs"):
        assert [r["epoch"] for r in trainer.fit(x, y, 2)] == [1, 2]
    assert [r["epoch"] for r in trainer.fit(x, y, 3)] == [1, 2, 3] and trainer.epoch == 3


def test_the_log_is_written_before_the_checkpoint_and_resume_trims_it(tmp_path, monkeypatch):
    """A crash between an epoch's two writes leaves the log one epoch ahead; resuming drops that record,
    trains the epoch again and ends bitwise where an uninterrupted run ends."""
    import kinn_ref.training.trainer as trainer_module
    x, y = _data()
    full = _trainer(tmp_path / "full")
    full.fit(x, y, 3)
    save = trainer_module.save_checkpoint

    def crash_at_epoch_2(path, **kw):
        if kw["epoch"] == 2:
            raise _Stop
        return save(path, **kw)

    monkeypatch.setattr(trainer_module, "save_checkpoint", crash_at_epoch_2)
    with pytest.raises(_Stop):
        _trainer(tmp_path / "part").fit(x, y, 3)
    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    assert [r["epoch"] for r in read_metrics(tmp_path / "part" / "metrics.jsonl")] == [1, 2]
    assert load_checkpoint(tmp_path / "part" / "checkpoint.npz").epoch == 1
    recs = _trainer(tmp_path / "part").fit(x, y, 3, resume=True)
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    assert [r["train_loss"] for r in recs] == [r["train_loss"] for r in full.log.records]
    a = load_checkpoint(tmp_path / "full" / "checkpoint.npz").params
    b = load_checkpoint(tmp_path / "part" / "checkpoint.npz").params
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_resume_warns_when_the_log_misses_epochs_before_the_checkpoint(tmp_path):
    x, y = _data()
    with pytest.raises(_Stop):
        _trainer(tmp_path).fit(x, y, 3, callback=_stop_after(2))
    log = tmp_path / "metrics.jsonl"
    log.write_text(log.read_text().splitlines(keepends=True)[0])
    with pytest.warns(UserWarning, match=r"holds no record of epoch\(s\) \[2\]"):
        _trainer(tmp_path).fit(x, y, 3, resume=True)


def test_a_start_removes_temporaries_of_killed_writes_and_an_earlier_run(tmp_path):
    x, y = _data()
    _trainer(tmp_path).fit(x, y, 2)
    stale = [tmp_path / ".checkpoint.npz.x1y2z3ab.tmp", tmp_path / ".metrics.jsonl.q_w9e8r7.tmp"]
    other = tmp_path / ".notes.txt.abcdefgh.tmp"
    for p in stale + [other]:
        p.write_bytes(b"partial")
    trainer = _trainer(tmp_path)
    epochs_seen = []
    trainer.fit(x, y, 1, callback=lambda t, r: epochs_seen.append(load_checkpoint(tmp_path / "checkpoint.npz")
                                                                    .epoch))
    assert not any(p.exists() for p in stale) and other.exists() and epochs_seen == [1]
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]


GUARD_CONFIG = {"model": "kinn", "input_dim": 3, "hidden_dims": [], "output_dim": 2, "dt": 5.0, "n_steps": 40,
                "seed": 1, "options": {"integrator": "euler"}}           # C = g = 1: euler needs dt < 2


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_guard_lowers_a_dt_unstable_from_the_start_before_the_first_step(dtype):
    x, y = _data(16)
    y = y.astype(dtype)
    config = dict(GUARD_CONFIG, dtype=dtype)
    kw = dict(lr=1e-3, batch_size=8, progress=False, schedule=None)
    with pytest.raises(kr.DivergentStepError, match=r"dt=5\.0 .*largest stable dt is 2\b"):   # unguarded
        Trainer(config, **kw).fit(x, y, 1)
    trainer = Trainer(config, guard=True, **kw)
    recs = trainer.fit(x, y, 2)
    assert recs[0]["train_loss"] < 10 and recs[0]["dt_changes"] == 1 and recs[1]["dt_changes"] == 0
    assert trainer.layer_dt()["layers.0"] == pytest.approx(0.9 * 2.0, rel=1e-5)


def test_the_guard_stops_training_on_a_circuit_unstable_for_every_dt_unless_asked_to_warn():
    from kinn_ref.errors import UnstableStepError, UnstableStepWarning
    from kinn_ref.training import StabilityGuard
    x, y = _data(16)
    config = dict(GUARD_CONFIG, dt=0.1, n_steps=4, options={"integrator": "euler", "param": "raw"})
    kw = dict(lr=1e-3, batch_size=8, progress=False, schedule=None)
    trainer = Trainer(config, guard=True, **kw)
    trainer.model.parameters()["layers.0.g_raw"][...] = -1.0                # dV/dt = +V: grows for every dt
    with pytest.raises(UnstableStepError, match=r"layers.0: the circuit is unstable for every dt.*"
                                                r"\[before the first step of epoch 1\]"):
        trainer.fit(x, y, 2)
    assert trainer.optimizer.step_count == 0
    trainer = Trainer(config, guard=StabilityGuard(on_unstable="warn"), **kw)
    trainer.model.parameters()["layers.0.g_raw"][...] = -1.0
    with pytest.warns(UnstableStepWarning, match="unstable for every dt"):
        recs = trainer.fit(x, y, 2)
    assert len(recs) == 2 and trainer.run_config(2, 2, "")["guard"]["on_unstable"] == "warn"


@pytest.mark.parametrize("schedule", [{}, {"warmup_steps": 3}])
def test_a_schedule_without_its_kind_is_refused(schedule):
    with pytest.raises(ValueError, match="schedule must have a 'kind'"):
        _trainer(schedule=schedule)
