"""The data-parallel all-reduce on GPU device arrays: NCCL through CuPy, one GPU per rank, no host copy.

Every rank's weighted gradients are packed into one device vector; ``ncclAllGather`` gives every rank all R
vectors, and they are added in rank order on the device, so the result is the same bits on every rank and
independent of NCCL's choice of ring or tree (the twin of
:meth:`kinn_ref.scaleout.mpi.MpiCommunicator.allreduce_sum`). MPI (mpi4py) only hands NCCL's unique id from
rank 0 to the others; a single process needs no ``mpiexec``.

CuPy is imported when a :class:`NcclAllReduce` is made (it is on the GPU machines, not a kinn_ref extra).
"""
import numpy as np

from .._optional import require


def _cupy():
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as exc:
        raise ImportError(f"the device all-reduce needs CuPy with NCCL ({exc}); install the cupy-cuda12x or "
                          "cupy-cuda13x package that matches the CUDA driver") from None
    return cupy, nccl


class NcclAllReduce:
    """Fixed-order all-reduce of device arrays over the ranks of an MPI communicator.

    Parameters
    ----------
    communicator : kinn_ref.scaleout.mpi.MpiCommunicator
        Its rank r drives the current GPU (select it before, e.g. with :func:`.data_parallel.setup_rank`).
    """

    def __init__(self, communicator):
        self.cupy, nccl = _cupy()
        from numba import cuda
        self.cupy.cuda.Device(cuda.get_current_device().id).use()    # CuPy on the GPU numba drives
        self.communicator = communicator
        uid = nccl.get_unique_id() if communicator.is_root else None
        uid = communicator.broadcast(uid)
        self.nccl_module = nccl
        self.comm = nccl.NcclCommunicator(communicator.size, uid, communicator.rank)
        self.size = communicator.size

    def _nccl_dtype(self, dtype):
        nccl = self.nccl_module
        return {np.dtype(np.float64): nccl.NCCL_FLOAT64, np.dtype(np.float32): nccl.NCCL_FLOAT32}[np.dtype(dtype)]

    def sum(self, arrays, names, weight, extra=()):
        """``sum_r weight_r * arrays_r`` in rank order, for the device arrays ``arrays[name]``.

        Parameters
        ----------
        arrays : dict of device arrays (numba or CuPy), one dtype
        names : sequence of str
            The arrays to reduce, in the order they are packed.
        weight : float
            This rank's share of the global batch (exactly 1.0 on one rank, so nothing is rounded).
        extra : sequence of device arrays
            Further one-element arrays (the loss) reduced the same way.

        Returns
        -------
        reduced : dict of numba device arrays
            Same keys (``names``), shapes and dtype.
        extra : list of numba device arrays
        """
        from numba import cuda
        cp = self.cupy
        parts = [cp.asarray(arrays[k]).ravel() for k in names] + [cp.asarray(e).ravel() for e in extra]
        dtype = parts[0].dtype
        local = cp.concatenate(parts) * dtype.type(weight)
        gathered = cp.empty((self.size, local.size), dtype)
        stream = cp.cuda.get_current_stream()
        self.comm.allGather(local.data.ptr, gathered.data.ptr, local.size, self._nccl_dtype(dtype), stream.ptr)
        total = gathered[0].copy()
        for r in range(1, self.size):
            total += gathered[r]
        stream.synchronize()
        out, at = {}, 0
        for k, part in zip(names, parts):
            out[k] = cuda.as_cuda_array(total[at:at + part.size].reshape(cp.asarray(arrays[k]).shape))
            at += part.size
        rest = []
        for e in parts[len(names):]:
            rest.append(cuda.as_cuda_array(total[at:at + e.size]))
            at += e.size
        return out, rest


class SingleProcessSum:
    """The all-reduce of one process (no MPI, no NCCL): its arrays are the sum. The one-rank twin of
    :class:`NcclAllReduce`, for the device step on one GPU (and under the CUDA simulator)."""

    size = 1

    def sum(self, arrays, names, weight, extra=()):
        """``arrays`` (``names``) and ``extra`` as they are; ``weight`` must be 1 (one process holds the whole
        batch)."""
        if weight != 1.0:
            raise ValueError(f"weight must be 1.0 in a single process, got {weight!r}")
        return {k: arrays[k] for k in names}, list(extra)


def data_parallel_train_step(spec, dparams, x, target, optimizer, reducer, global_batch, V0=None,
                             checkpoint_every=None):
    """One device-resident training step of :func:`kinn_ref.backends.cuda_backend.training.step.train_step` on this
    rank's shard ``x`` of a global batch of ``global_batch`` rows, the gradients all-reduced by ``reducer``.

    Parameters
    ----------
    spec : LayerSpec
    dparams : dict of device arrays
    x, target : device arrays
        This rank's rows of the global batch and their targets.
    optimizer : DeviceSGD or DeviceAdam
    reducer : NcclAllReduce
    global_batch : int
        Rows of the global batch (the sum of the shards).

    Returns
    -------
    device array (1,)
        The global batch's loss before the update.
    """
    from ..backends.cuda_backend.backend import run_backward, run_forward
    from ..backends.cuda_backend.training.losses import mse_loss
    require("numba.cuda", "the device all-reduce")
    weight = x.shape[0] / global_batch
    y, tape = run_forward(spec, dparams, x, V0, checkpoint_every, own_inputs=False)
    loss, dy = mse_loss(y, target)
    grads = run_backward(spec, tape, dy)
    names = list(dparams)
    reduced, (total_loss,) = reducer.sum(grads, names, weight, extra=(loss,))
    optimizer.step(reduced)
    return total_loss
