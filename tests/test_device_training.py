"""The device step of ``kinn-ref train --backend cuda --distributed mpi`` (kinn_ref.scaleout.device_training)
against the host trainer on the cuda backend, the copies it makes per step, and what it refuses.

In CI the kernels run on numba's CUDA simulator (``tests/conftest.py``) on tiny sizes; the all-reduce is the
one-process :class:`SingleProcessSum` (NCCL needs a GPU: tests/test_scaleout_gpu.py runs it there).
"""
import numpy as np
import pytest

import kinn_ref as kr
from helpers import CUDA_TOLERANCE as TOLERANCE, rel_error
from kinn_ref.scaleout.device_allreduce import SingleProcessSum
from kinn_ref.scaleout.mpi import DistributedTrainingError
from kinn_ref.training.trainer import Trainer

pytestmark = pytest.mark.skipif("cuda" not in kr.available_backends(),
                                reason="cuda backend not usable here (no GPU, no simulator)")



class SingleRank:
    """The one rank of a run without MPI (what DataParallelTrainer reads of a communicator)."""

    rank, size, local_rank, local_size, is_root = 0, 1, 0, 1, True

    def shard(self, n):
        return 0, n


def device_trainer(config, **kwargs):
    from kinn_ref.scaleout.device_training import DeviceDataParallelTrainer
    return DeviceDataParallelTrainer(config, backend="cuda", progress=False, communicator=SingleRank(),
                                     reducer=SingleProcessSum(), **kwargs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_device_twins_match_host(dtype):
    """Activations, losses and the linear layer on the device against their host twins."""
    from kinn_ref.activations import activation
    from kinn_ref.backends.cuda_backend import activations, linear
    from kinn_ref.backends.cuda_backend.training import losses as device_losses
    from kinn_ref.backends.cuda_backend.backend import upload
    from kinn_ref.network import Linear
    from kinn_ref.training import losses
    tol = TOLERANCE[np.dtype(dtype)]
    rng = np.random.default_rng(4)
    z = (3 * rng.standard_normal((3, 5))).astype(dtype)
    z[0, 0] = 0.0
    dy = rng.standard_normal(z.shape).astype(dtype)
    for name in ("relu", "tanh", "sigmoid", "softplus", "identity"):
        value, vjp = activation(name, z)
        out = activations.activation(name, upload(z))
        assert rel_error(out.copy_to_host(), value) <= tol, name
        dz = activations.activation_vjp(name, upload(z), out, upload(dy)).copy_to_host()
        assert dz.dtype == dtype and rel_error(dz, vjp(dy)) <= tol, name
    t = rng.standard_normal(z.shape).astype(dtype)
    t[1] = z[1]                                   # a row with zero residual: relative_l2's subgradient 0
    labels = rng.integers(0, 5, 3)
    for name, target, device_target in [("mse", t, upload(t)), ("relative_l2", t, upload(t)),
                                        ("cross_entropy", labels, upload(labels))]:
        value, d = losses.LOSSES[name](z, target)
        loss, d_dev = device_losses.DEVICE_LOSSES[name](upload(z), device_target)
        assert abs(loss.copy_to_host()[0] - value) <= tol * abs(value), name
        assert d_dev.dtype == dtype and rel_error(d_dev.copy_to_host(), d) <= tol, name
    layer = Linear(5, 2, seed=0, dtype=dtype)
    layer.params["b"] = rng.standard_normal(2).astype(dtype)
    x = rng.standard_normal((3, 2, 5)).astype(dtype)
    dy2 = rng.standard_normal((3, 2, 2)).astype(dtype)
    W, b = upload(layer.params["W"]), upload(layer.params["b"])
    assert rel_error(linear.linear_forward(upload(x), W, b).copy_to_host(), layer.forward(x)) <= tol
    dx = layer.backward(dy2)
    dW, db, dx_dev = linear.linear_backward(upload(x), W, upload(dy2))
    for got, want in ((dW, layer.grads["W"]), (db, layer.grads["b"]), (dx_dev, dx)):
        assert rel_error(got.copy_to_host(), want) <= tol


def test_grid_readout_regrouped_per_point():
    """The device regrouping of a grid readout per point, and its adjoint, are KINN._to_points/_from_points."""
    from kinn_ref.backends.cuda_backend.backend import upload
    from kinn_ref.backends.cuda_backend.regroup import from_points, to_points
    net = kr.KINN(2, [], 3, head=True, coupling="grid", grid_shape=(4,), order=2, readout="cells")
    layer = net.layers[0]
    y = np.random.default_rng(6).standard_normal((2, 5, layer.spec.readout_width))
    z = net._to_points(layer, y)
    assert np.array_equal(to_points(layer.spec, upload(y)).copy_to_host(), z)
    assert np.array_equal(from_points(layer.spec, upload(z)).copy_to_host(), net._from_points(layer, z))


MLP = {"model": "mlp", "input_dim": 3, "hidden_dims": [4], "output_dim": 2, "activation": "tanh"}
KINN_HEAD = {"model": "kinn", "input_dim": 3, "hidden_dims": [3], "output_dim": 2, "n_steps": 3, "head": True,
             "activation": "softplus", "options": {"coupling": "dense"}}
#: The same network on uncoupled cells: the device step does not depend on the coupling, and the simulator
#: runs the uncoupled kernels several times faster than the dense ones.
KINN_HEAD_CELLS = dict(KINN_HEAD, options={"coupling": "none"})
SEQUENCE = {"model": "kinn", "input_dim": 1, "hidden_dims": [], "output_dim": 1, "n_steps": 3, "head": True,
            "options": {"order": 2, "coupling": "none", "readout": "cells", "return_sequences": True}}


GRID = {"model": "kinn", "input_dim": 2, "hidden_dims": [], "output_dim": 1, "n_steps": 2, "head": True,
        "options": {"coupling": "grid", "grid_shape": [3], "order": 2, "readout": "cells"}}


def _data(config, loss, rng, n=8):
    options = config.get("options", {})
    lead = (n, 4) if options.get("return_sequences") else (n, *options.get("grid_shape", ()))
    x = rng.standard_normal(lead + (config["input_dim"],))
    if loss == "cross_entropy":
        return x, rng.integers(0, config["output_dim"], n)
    return x, rng.standard_normal(lead + (config["output_dim"],))


@pytest.mark.parametrize("config,loss,settings,dtype", [
    (MLP, "cross_entropy", {"optimizer": "sgd", "lr": 0.1}, "float64"),
    (KINN_HEAD_CELLS, "relative_l2", {"optimizer": "adamw", "lr": 1e-2, "clip_norm": 0.5, "penalty": 0.01},
     "float64"),
    pytest.param(KINN_HEAD, "relative_l2", {"optimizer": "adamw", "lr": 1e-2, "clip_norm": 0.5, "penalty": 0.01},
                 "float64", marks=pytest.mark.slow),
    (SEQUENCE, "mse", {"optimizer": "adam", "lr": 1e-2, "guard": True}, "float64"),
    (GRID, "relative_l2", {"optimizer": "adam", "lr": 1e-2, "penalty": 0.1}, "float64"),
    pytest.param(dict(GRID, options=dict(GRID["options"], integrator="implicit")), "mse", {"lr": 1e-2}, "float64",
                 marks=pytest.mark.slow),
    pytest.param(KINN_HEAD, "mse", {"optimizer": "adam", "lr": 1e-2}, "float32", marks=pytest.mark.slow)],
    ids=["mlp", "kinn-head", "kinn-head-dense", "sequence-guard", "grid", "grid-implicit", "kinn-head-float32"])
def test_device_step_equals_host_trainer(config, loss, settings, dtype):
    """Same global batches, 2 epochs of 2 steps, held-out evaluation each epoch: the parameters, the losses and
    the gradient norms of the host trainer (cuda KINN layers, NumPy for the rest)."""
    config = dict(config, dtype=dtype)
    x, y = _data(config, loss, np.random.default_rng(0))
    kw = dict(loss=loss, batch_size=4, metrics=("mse",) if loss != "cross_entropy" else ("accuracy",), **settings)
    host = Trainer(config, backend="cuda", progress=False, **kw)
    device = device_trainer(config, **kw)
    records = [t.fit(x, y, 2, validation=(x[:3], y[:3])) for t in (host, device)]
    tol = TOLERANCE[np.dtype(dtype)]
    for k, p in host.model.parameters().items():
        q = device.model.parameters()[k]
        assert q.dtype == p.dtype and rel_error(q, p) <= tol, (k, rel_error(q, p))
    for key in ("train_loss", "grad_norm", "val_loss") + (("penalty",) if "penalty" in settings else ()):
        assert rel_error([r[key] for r in records[1]], [r[key] for r in records[0]]) <= tol, key
    assert [r["step"] for r in records[1]] == [2, 4] and device.optimizer.step_count == 4
    for slot, values in host.optimizer.state_dict()["slots"].items():     # the host optimizer is brought up to date
        for k, v in values.items():     # (Adam's v holds squared gradients: twice their relative error)
            assert rel_error(device.optimizer.slots[slot][k], v) <= tol * (2 if slot == "v" else 1), (slot, k)


@pytest.mark.parametrize("layer,n_kinn", [
    (KINN_HEAD_CELLS, 6),                                       # W, b, C_raw, g_raw, leak, beta
    pytest.param(KINN_HEAD, 7, marks=pytest.mark.slow)],        # and the dense coupling's G_raw
    ids=["cells", "dense"])
@pytest.mark.parametrize("guard", [False, True])
def test_copies_per_step(guard, layer, n_kinn):
    """One copy to the host per step (the report); none to the device once the data and the epoch's order are
    there; with the guard, also one per KINN parameter (the guard reads them on the host)."""
    from kinn_ref.backends.cuda_backend.diagnostics.transfers import count_transfers
    config = dict(layer, hidden_dims=[])
    x, y = _data(config, "mse", np.random.default_rng(1))
    trainer = device_trainer(config, loss="mse", batch_size=4, guard=guard)
    order = np.arange(8)
    trainer.train_step(*trainer._batch(x, y, order, 0, 4), 1e-2)       # uploads x, y and the order
    with count_transfers() as count:
        for start in (4, 0):
            trainer.train_step(*trainer._batch(x, y, order, start, start + 4), 1e-2)
    kinn = len(trainer.network.kinn_names()) if guard else 0
    assert count.to_device == 0, count.events
    assert count.to_host == 2 * (1 + kinn), count.events
    assert kinn == (n_kinn if guard else 0)


def test_warm_up_pass_changes_nothing():
    """The warm-up (kinn_ref.tasks.run.first_step_seconds) runs a whole step's kernels with the update gated off."""
    x, y = _data(MLP, "cross_entropy", np.random.default_rng(5))
    trainer = device_trainer(MLP, loss="cross_entropy", batch_size=4, optimizer="adam")
    trainer.fit(x, y, 1)
    params = {k: v.copy_to_host() for k, v in trainer.network.params.items()}
    slots = {k: v.copy_to_host() for k, v in trainer.device_optimizer.slots["v"].items()}
    trainer.first_pass(x[:4])
    assert trainer.device_optimizer.step_count == 2
    assert all(np.array_equal(trainer.network.params[k].copy_to_host(), v) for k, v in params.items())
    assert all(np.array_equal(trainer.device_optimizer.slots["v"][k].copy_to_host(), v) for k, v in slots.items())


def test_failed_step_is_refused_before_the_update():
    """A non-finite loss stops the step on the device (the update is skipped) with the host trainer's message."""
    x, y = _data(MLP, "mse", np.random.default_rng(2))
    y[:, 0] = np.nan
    trainer = device_trainer(MLP, loss="mse", batch_size=4)
    before = {k: v.copy_to_host() for k, v in trainer.network.params.items()}
    with pytest.raises(DistributedTrainingError, match="the loss became non-finite .* epoch 1, optimizer step 1; "
                                                       "the update was not applied"):
        trainer.fit(x, y, 1)
    assert all(np.array_equal(trainer.network.params[k].copy_to_host(), v) for k, v in before.items())


def test_checkpoint_resume_continues_the_run(tmp_path):
    """Rank 0's checkpoint holds the device parameters and optimizer state; resuming copies them back."""
    from kinn_ref.training.checkpoint import load_checkpoint
    x, y = _data(MLP, "mse", np.random.default_rng(3))
    full = device_trainer(MLP, loss="mse", batch_size=4, out_dir=tmp_path / "full")
    full.fit(x, y, 2)
    part = device_trainer(MLP, loss="mse", batch_size=4, out_dir=tmp_path / "part")
    part.fit(x, y, 1)
    resumed = device_trainer(MLP, loss="mse", batch_size=4, out_dir=tmp_path / "part")
    resumed.fit(x, y, 2, resume=True)
    a, b = load_checkpoint(tmp_path / "full" / "checkpoint.npz"), load_checkpoint(tmp_path / "part" / "checkpoint.npz")
    assert all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)


def test_refusals_name_the_argument():
    from kinn_ref.scaleout.device_training import DeviceDataParallelTrainer
    with pytest.raises(ValueError, match=r"^backend='numpy' \(--backend\): the device step of --backend cuda "
                                         "--distributed mpi runs on the cuda backend only"):
        DeviceDataParallelTrainer(MLP, backend="numpy", communicator=SingleRank(), reducer=SingleProcessSum())

    class TwoRanksOnOneHost(SingleRank):
        size = local_size = 2
    with pytest.raises(ValueError, match=r"^--distributed mpi: 2 ranks on this host share 1 GPU\(s\), and the "
                                         r"device step .* takes one GPU per rank \(NCCL\); start at most 1 rank"):
        DeviceDataParallelTrainer(MLP, backend="cuda", communicator=TwoRanksOnOneHost(),
                                  reducer=SingleProcessSum())
