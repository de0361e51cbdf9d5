"""Data-parallel training over MPI ranks (``mpiexec -n R kinn-ref train ... --distributed mpi``).

Every rank builds the same model and data and draws the same batch order (one seed). Each global mini-batch
is split into R contiguous shards; rank r computes the loss and the gradients of its shard, weighted by its
share ``n_r / n`` of the batch (every loss is a mean over the batch, so the weighted sum is the gradient of the
whole batch), and :meth:`MpiCommunicator.allreduce_sum` adds them in rank order. Clipping, the conductance
penalty, the update and the stability guard then run on the same bits on every rank, so the parameters stay
identical across ranks without being broadcast. With one rank the weight is exactly 1 and training is bitwise
the single-process run; with R ranks it equals it to rounding (float64: relative 1e-12 after a few steps).

Rank 0 alone writes the checkpoint, the metrics and the progress bar. Resuming reads the checkpoint on every
rank: bitwise with the rank count that wrote it, to rounding with another (a warning says so).

A rank whose step fails (an error in its forward or backward pass, a non-finite loss on its shard) reports it
in the same all-reduce, and every rank raises :class:`~kinn_ref.scaleout.mpi.DistributedTrainingError` before
the update: the last checkpoint stays as it was.
"""
import warnings

import numpy as np

from ..training.trainer import CHECKPOINT_NAME, Trainer
from .mpi import DistributedTrainingError, MpiCommunicator, threads_per_rank


def flatten(arrays, names):
    """The arrays of ``names`` (in that order) as one float64 vector."""
    return np.concatenate([np.asarray(arrays[k], np.float64).ravel() for k in names]) if names else np.zeros(0)


def unflatten(vector, like, names):
    """Inverse of :func:`flatten`: arrays of the shapes and dtypes of ``like``."""
    out, at = {}, 0
    for k in names:
        n = like[k].size
        out[k] = vector[at:at + n].reshape(like[k].shape).astype(like[k].dtype, copy=False)
        at += n
    return out


class DataParallelTrainer(Trainer):
    """:class:`~kinn_ref.training.trainer.Trainer` whose steps are shared by the ranks of ``communicator``.

    Parameters
    ----------
    *args, **kwargs
        Those of :class:`Trainer`. ``out_dir`` is where rank 0 writes; pass it to every rank (the others
        read the checkpoint from it when resuming and write nothing).
    communicator : MpiCommunicator
    """

    def __init__(self, *args, communicator, out_dir=None, **kwargs):
        self.communicator = communicator
        self.run_dir = out_dir
        root = communicator.is_root
        if not root:
            kwargs["progress"] = False
        super().__init__(*args, out_dir=out_dir if root else None, **kwargs)

    def _checkpoint_extra(self):
        return {"ranks": self.communicator.size}

    def load(self, path, run_config=None, steps_per_epoch=None):
        ckpt = super().load(path, run_config, steps_per_epoch)
        ranks = ckpt.meta["extra"].get("ranks", 1)
        if ranks != self.communicator.size and self.communicator.is_root:
            warnings.warn(f"checkpoint {path} was written by {ranks} rank(s), resuming on "
                          f"{self.communicator.size}: the continuation equals the original to rounding, not "
                          "bitwise (the all-reduce adds the shards' gradients in another grouping)", stacklevel=3)
        return ckpt

    def fit(self, x, y, epochs, validation=None, resume=None, callback=None):
        if resume is True:
            if self.run_dir is None:
                raise ValueError("resume=True needs out_dir (the checkpoint is out_dir/checkpoint.npz)")
            from pathlib import Path
            resume = Path(self.run_dir) / CHECKPOINT_NAME
        return super().fit(x, y, epochs, validation=validation, resume=resume, callback=callback)

    def _batch_gradients(self, xb, yb, epoch, step, hint):
        params = self.model.parameters()
        names = list(params)
        n = len(xb)
        start, stop = self.communicator.shard(n)
        weight = (stop - start) / n
        failure = None
        local = np.zeros(1 + sum(p.size for p in params.values()))   # an empty share adds nothing
        if stop > start:
            try:
                loss, grads = super()._batch_gradients(xb[start:stop], yb[start:stop], epoch, step, hint)
                local[0] = loss * weight
                local[1:] = weight * flatten(grads, names)
            except Exception as exc:    # reported to every rank in the all-reduce below
                failure = f"{type(exc).__name__}: {' '.join(str(exc).split())} (epoch {epoch}, optimizer step {step})"
        try:
            total = self.communicator.allreduce_sum(local, failure)
        except DistributedTrainingError as exc:
            where = "" if self.run_dir is None else f"; the last checkpoint in {self.run_dir} is intact"
            raise DistributedTrainingError(f"{exc}; the update of epoch {epoch}, step {step} was not "
                                           f"applied{where}") from None
        return float(total[0]), unflatten(total[1:], params, names)


def trainer_class(communicator):
    """A trainer factory bound to ``communicator`` (the ``trainer_class`` argument of
    :func:`kinn_ref.tasks.run.train_task`): on the cuda backend the
    :class:`~kinn_ref.scaleout.device_training.DeviceDataParallelTrainer` (the whole step on the GPU, the
    gradients all-reduced by NCCL), on the others a :class:`DataParallelTrainer`. The ranks agree on the
    construction, so an argument one of them refuses is one line and status 2 on every rank."""
    def build(*args, **kwargs):
        from ..backends import resolve
        if resolve(kwargs.get("backend", "numpy")) == "cuda":
            from .device_training import DeviceDataParallelTrainer as cls
        else:
            cls = DataParallelTrainer
        return communicator.agreed(lambda: cls(*args, communicator=communicator, **kwargs))
    return build


def setup_rank(communicator, backend):
    """Threads and device of this rank for ``backend`` (a name, ``"auto"`` resolved here): numba's threads are
    the host's cores over its ranks; on the cuda backend, rank r drives GPU ``local_rank mod (GPUs on the
    host)``."""
    from ..backends import resolve
    from .engine import limit_threads
    limit_threads(threads_per_rank(communicator))
    if resolve(backend) == "cuda":
        from numba import cuda
        cuda.select_device(communicator.local_rank % len(cuda.gpus))


def run_distributed(args, run):
    """``run(args, communicator)`` on this rank. A failure every rank agreed on ends every rank with one line
    and status 1; an error this rank met alone (outside the all-reduce) is printed and ends every rank
    through ``MPI_Abort``, so no rank waits for it forever."""
    import sys

    from ..cli import EXPECTED_ERRORS, _one_line
    communicator = MpiCommunicator()
    try:
        return run(args, communicator)
    except DistributedTrainingError as exc:
        if exc.status == 2 and communicator.is_root:    # a bad argument: said once, by rank 0
            print(f"kinn-ref {args.command}: error: {exc}", file=sys.stderr, flush=True)
        elif exc.status == 1:
            print(f"kinn-ref {args.command}: error: rank {communicator.rank}: {exc}", file=sys.stderr, flush=True)
        return exc.status
    except BaseException as exc:
        if communicator.size == 1:
            raise
        text = _one_line(exc) if isinstance(exc, EXPECTED_ERRORS) else f"{type(exc).__name__}: {exc}"
        print(f"kinn-ref {args.command}: error: rank {communicator.rank} of {communicator.size}: {text}; "
              "ending every rank", file=sys.stderr, flush=True)
        communicator.abort(2)
