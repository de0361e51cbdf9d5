"""Data-parallel training with the whole step on the GPU (``mpiexec -n R kinn-ref train --backend cuda
--distributed mpi``).

:class:`DeviceDataParallelTrainer` is the :class:`~kinn_ref.scaleout.data_parallel.DataParallelTrainer` whose
step never leaves the device: the network (:class:`~kinn_ref.backends.cuda_backend.network.DeviceNetwork`),
the task's loss (:mod:`~kinn_ref.backends.cuda_backend.training.losses`), the all-reduce of the weighted gradients
(:class:`~kinn_ref.scaleout.device_allreduce.NcclAllReduce`), the conductance penalty
(:mod:`~kinn_ref.backends.cuda_backend.training.regularization`), the finiteness checks and the clipping
(:mod:`~kinn_ref.backends.cuda_backend.training.step_checks`) and the optimizer update
(:mod:`~kinn_ref.backends.cuda_backend.training.step`). The training data are uploaded once per run and the batch
order once per epoch; a batch is gathered on the device.

What reaches the host, and when:

- every step, one copy of the step's report (loss, gradient norm, penalty, what was not finite) for the logs and
  for the error that stops a failed step on every rank (the report is the same bits on every rank);
- with the stability guard on, every step, the KINN layers' parameters (the guard analyses them on the host
  and lowers a layer's ``dt`` there; the device passes read the layer's spec);
- every epoch, the held-out predictions (the parameters stay on the device);
- at a checkpoint (rank 0 writes it) and at the end of :meth:`fit`, the parameters and the optimizer state.

The host model and optimizer are brought up to date at those points only; a loaded checkpoint is copied to the
device. Results equal the host trainer's on the cuda backend to rounding (float64 relative 1e-11 after several
steps, float32 1e-5), not bitwise: the linear layers, losses and updates run other kernels than NumPy's.

Every task and model of ``kinn-ref train`` runs on it; :func:`device_refusal` names what does not.
"""
import numpy as np

from ..errors import NonFiniteTrainingError
from .data_parallel import DataParallelTrainer
from .mpi import DistributedTrainingError

#: The device step, in the words of the CLI (for the refusals).
DEVICE_STEP = "the device step of --backend cuda --distributed mpi"


def device_refusal(trainer):
    """Why ``trainer``'s settings cannot run on the device step (one line naming the argument), or None."""
    from ..backends.cuda_backend.network import unsupported
    if trainer.backend != "cuda":
        return f"backend={trainer.backend!r} (--backend): {DEVICE_STEP} runs on the cuda backend only"
    from numba import cuda
    gpus, ranks = len(cuda.gpus), trainer.communicator.local_size
    if ranks > gpus:
        return (f"--distributed mpi: {ranks} ranks on this host share {gpus} GPU(s), and {DEVICE_STEP} takes one "
                f"GPU per rank (NCCL); start at most {gpus} rank(s) per host")
    why = unsupported(trainer.model)
    if why is not None:
        return (f"--model: {why}; {DEVICE_STEP} runs KINN layers, linear layers and heads (train this model "
                "with --backend numba --distributed mpi)")
    return None


class DeviceDataParallelTrainer(DataParallelTrainer):
    """:class:`DataParallelTrainer` whose parameters, gradients and optimizer state stay on this rank's GPU.

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`DataParallelTrainer` (``backend`` must resolve to ``"cuda"``).
    communicator : MpiCommunicator
    reducer : optional
        Sums the ranks' weighted device gradients (``sum(arrays, names, weight, extra)``, see
        :meth:`NcclAllReduce.sum`); default: an :class:`NcclAllReduce` over ``communicator``.

    Raises
    ------
    ValueError
        Naming the argument, for what the device step does not run (:func:`device_refusal`).
    """

    def __init__(self, *args, communicator, reducer=None, **kwargs):
        super().__init__(*args, communicator=communicator, **kwargs)
        why = device_refusal(self)
        if why is not None:
            raise ValueError(why)
        from ..backends.cuda_backend.training.losses import DEVICE_LOSSES
        from ..backends.cuda_backend.network import DeviceNetwork
        from ..backends.cuda_backend.training.step_checks import StepChecks
        from ..backends.cuda_backend.training.step import twin_optimizer
        self.network = DeviceNetwork(self.model)
        self.device_optimizer = twin_optimizer(self.optimizer, self.network.params)
        self.device_loss = DEVICE_LOSSES[self.loss_name]
        self.checks = StepChecks(self.network.names, next(iter(self.network.params.values())).dtype)
        if reducer is None:
            from .device_allreduce import NcclAllReduce
            reducer = NcclAllReduce(communicator)
        self.reducer = reducer
        self._guarded = self.network.kinn_names()
        self._uploads, self._order, self._empty_share = {}, (None, None), None

    # ------------------------------------------------------------------ host and device copies
    def _on_device(self, a):
        """The device copy of the host array ``a``, made once (the data of a run, the held-out set)."""
        from ..backends.cuda_backend.training.batches import to_device
        entry = self._uploads.get(id(a))
        if entry is None or entry[0] is not a:
            if self.loss_name == "cross_entropy" and np.issubdtype(a.dtype, np.integer) and a.size \
                    and (a.min() < 0 or a.max() >= self.config["output_dim"]):
                raise ValueError(f"labels must lie in [0, {self.config['output_dim']}), got range "
                                 f"[{a.min()}, {a.max()}]")
            entry = self._uploads[id(a)] = (a, to_device(a))
        return entry[1]

    def _to_host(self):
        """Bring the host model's parameters and the host optimizer's state up to date."""
        self.network.copy_parameters_to_host()
        self.device_optimizer.copy_state_to(self.optimizer)

    def load(self, path, run_config=None, steps_per_epoch=None):
        ckpt = super().load(path, run_config, steps_per_epoch)
        self.network.load_host_parameters()
        self.device_optimizer.load_host_state(self.optimizer)
        return ckpt

    def save(self, path, run_config=None):
        self._to_host()
        return super().save(path, run_config)

    def fit(self, x, y, epochs, validation=None, resume=None, callback=None):
        self._uploads, self._order = {}, (None, None)
        try:
            return super().fit(x, y, epochs, validation=validation, resume=resume, callback=callback)
        finally:
            self._to_host()
            self._uploads, self._order = {}, (None, None)

    # ------------------------------------------------------------------ batches, predictions, the step
    def _batch(self, x, y, order, start, stop):
        """The global batch ``order[start:stop]``, gathered on the device (the order is uploaded once)."""
        from ..backends.cuda_backend.training.batches import gather_rows, to_device
        if self._order[0] is not order:
            self._order = (order, to_device(order))
        index = self._order[1]
        return (gather_rows(self._on_device(x), index, start, stop),
                gather_rows(self._on_device(y), index, start, stop))

    def predict(self, x, batch_size=256):
        """Model output for ``x`` by the device network, copied to the host per batch."""
        dx = self._on_device(self._cast(x))
        return np.concatenate([self.network.forward(dx[i:i + batch_size]).copy_to_host()
                               for i in range(0, dx.shape[0], batch_size)])

    def first_pass(self, xb):
        """A step's kernels on ``xb`` (network, loss, checks, update) with the update's gate closed: they compile
        (or load from the disk cache) here, and the parameters, the optimizer state and its step count stay as
        they were."""
        from ..backends.cuda_backend.training.batches import to_device
        from ..backends.cuda_backend.runtime.device import fill, zeros
        pred = self.network.forward(to_device(xb))
        target = zeros((pred.shape[0],), np.int64) if self.loss_name == "cross_entropy" else pred
        loss, d_pred = self.device_loss(pred, target)
        grads = self.network.backward(d_pred)
        gate = fill(self.checks.gradients(loss, grads, self.clip_norm), 0.0)
        step_count = self.device_optimizer.step_count
        self.device_optimizer.step(grads, self.optimizer.lr, gate)
        self.device_optimizer.step_count = step_count
        self.checks.parameters(self.network.params)

    def _share(self, xb, yb):
        """This rank's loss (device (1,)) and gradients of its rows of the global batch, and its weight."""
        n = xb.shape[0]
        start, stop = self.communicator.shard(n)
        if stop > start:
            pred = self.network.forward(xb[start:stop])
            loss, d_pred = self.device_loss(pred, yb[start:stop])
            return loss, self.network.backward(d_pred), (stop - start) / n
        if self._empty_share is None:        # more ranks than rows: this rank adds nothing
            from ..backends.cuda_backend.runtime.device import zeros
            p = self.network.params
            self._empty_share = (zeros((1,), p[self.network.names[0]].dtype),
                                 {k: zeros(v.shape, v.dtype) for k, v in p.items()})
        return self._empty_share + (0.0,)

    def train_step(self, xb, yb, lr):
        """One optimizer step on the device batch ``(xb, yb)`` (every rank passes the global batch and takes
        its shard); returns ``(loss, penalty, grad_norm, dt_changes)`` as :meth:`Trainer.train_step` does.

        Raises
        ------
        DistributedTrainingError
            On every rank, when the global loss, a gradient or the norm is not finite (the update was not
            applied) or a parameter became non-finite in the update.
        UnstableStepError
            When the guard finds a circuit unstable for every ``dt``.
        """
        epoch, step = self.epoch + 1, self.optimizer.step_count + 1
        loss, grads, weight = self._share(xb, yb)
        names = self.network.names
        reduced, (total,) = self.reducer.sum(grads, names, weight, extra=(loss,))
        penalty = None
        if self.penalty:        # from the parameters, the same bits on every rank: after the all-reduce
            from ..backends.cuda_backend.training.regularization import conductance_penalty
            penalty = conductance_penalty(self.network, self.penalty, reduced)
        gate = self.checks.gradients(total, reduced, self.clip_norm, penalty)
        self.device_optimizer.step(reduced, lr, gate)
        self.checks.parameters(self.network.params)
        report = self.checks.read()
        self.optimizer.step_count = self.device_optimizer.step_count
        failure = _failure(report, epoch, step, lr)
        if failure is not None:
            where = "" if self.run_dir is None else f"; the last checkpoint in {self.run_dir} is intact"
            raise DistributedTrainingError(f"{failure} (on every rank){where}") from None
        changes = []
        if self.guard is not None:
            self.network.copy_parameters_to_host(self._guarded)
            changes = self._apply_guard(epoch, step)
        return report["loss"], self.penalty * report["penalty"], report["norm"], changes


def _failure(report, epoch, step, lr):
    """The host trainer's message for what the step's report says was not finite, or None."""
    hint = "; lower the learning rate, clip gradients or enable the stability guard"
    at = f"epoch {epoch}, optimizer step {step}"
    if not np.isfinite(report["loss"]):
        error = NonFiniteTrainingError(f"the loss became non-finite ({report['loss']}) at {at}; the update was "
                                       f"not applied{hint}", "loss", epoch, step)
    elif report["bad_gradients"]:
        name, bad = next(iter(report["bad_gradients"].items()))
        error = NonFiniteTrainingError(f"gradient of {name!r} holds {bad} non-finite value(s) at {at}; the update "
                                       f"was not applied{hint}", f"gradient of {name!r}", epoch, step)
    elif not report["applied"]:
        error = NonFiniteTrainingError(f"the global gradient norm overflowed at {at}; the update was not "
                                       f"applied{hint}", "global gradient norm", epoch, step)
    elif report["bad_parameters"]:
        name, bad = next(iter(report["bad_parameters"].items()))
        error = NonFiniteTrainingError(f"parameter {name!r} holds {bad} non-finite value(s) at {at}; it became so "
                                       f"in this update (learning rate {lr:g}); nothing of epoch {epoch} is "
                                       f"saved{hint}", f"parameter {name!r}", epoch, step)
    else:
        return None
    return f"{type(error).__name__}: {error}"
