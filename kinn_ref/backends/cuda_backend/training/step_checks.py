"""The checks of a device training step, and the report the host reads once per step.

Twins of the host trainer's checks (:meth:`kinn_ref.training.trainer.Trainer.train_step`): the loss and
every gradient finite before the update, the global gradient norm
(:func:`kinn_ref.training.clipping.global_norm`) and its clipping
(:func:`kinn_ref.training.clipping.clip_by_global_norm`), every parameter finite after it. All of it runs
on the device into one float64 report vector, and the clipping factor and the decision to update go to the
optimizer as a device *gate* (:mod:`.training.step`), so one copy of the report to the host per step is all the
host needs: the loss and the norm for the logs, and what was not finite for the error.

Report layout for ``n`` arrays: ``[loss, norm, apply, penalty, sumsq_0..sumsq_{n-1}, bad_grad_0.., bad_param_0..]``
(``penalty`` is the conductance penalty's sum of means, :mod:`.regularization`, or 0; ``bad_*`` count the
non-finite entries of each gradient and, after the update, of each parameter).
"""
from types import SimpleNamespace
import math

import numpy as np

from ...launch_warnings import quiet_launches
from ..runtime import config
from ..runtime.compat import cuda_module
from ..runtime.device import block_sum, empty, flat, kernel_cache, multiprocessors, scalar, zeros

cuda = cuda_module()

LOSS, NORM, APPLY, PENALTY, FIRST = 0, 1, 2, 3, 4


@kernel_cache
def _check_kernels(dtype):
    NT = config.FLAT_BLOCK

    @cuda.jit
    def square_sum(a, partial):
        """Per block: ``partial[block] = (sum a^2, count of non-finite a)`` in float64, tree in shared memory."""
        sq = cuda.shared.array(NT, np.float64)
        bad = cuda.shared.array(NT, np.float64)
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        acc = 0.0
        nbad = 0.0
        while i < a.shape[0]:
            v = np.float64(a[i])
            acc += v * v
            if not math.isfinite(v):
                nbad += 1.0
            i += stride
        tid = cuda.threadIdx.x
        sq[tid] = acc
        bad[tid] = nbad
        block_sum(sq, tid)
        block_sum(bad, tid)
        if tid == 0:
            partial[cuda.blockIdx.x, 0] = sq[0]
            partial[cuda.blockIdx.x, 1] = bad[0]

    @cuda.jit
    def collect(partial, report, sq_slot, bad_slot):
        """The blocks' sums, in block order, into ``report[sq_slot]`` (when >= 0) and ``report[bad_slot]``."""
        if cuda.grid(1) == 0:
            acc = 0.0
            nbad = 0.0
            for j in range(partial.shape[0]):
                acc += partial[j, 0]
                nbad += partial[j, 1]
            if sq_slot >= 0:
                report[sq_slot] = acc
            report[bad_slot] = nbad

    @cuda.jit
    def decide(loss, penalty, report, n, max_norm, gate):
        """``report[:4] = (loss, norm, apply, penalty)`` and ``gate = (scale, apply)``: the norm from the arrays'
        sums in order; the update applies when the loss, every gradient and the norm are finite; ``scale`` is
        ``max_norm / norm`` when ``max_norm > 0`` and the norm exceeds it, else 1."""
        if cuda.grid(1) == 0:
            total = 0.0
            nbad = 0.0
            for j in range(n):
                total += report[FIRST + j]
                nbad += report[FIRST + n + j]
            norm = math.sqrt(total)
            value = np.float64(loss[0])
            ok = math.isfinite(value) and nbad == 0.0 and math.isfinite(norm)
            report[LOSS] = value
            report[NORM] = norm
            report[APPLY] = 1.0 if ok else 0.0
            report[PENALTY] = penalty[0]
            scale = max_norm / norm if max_norm > 0.0 and norm > max_norm else 1.0
            gate[0] = scale
            gate[1] = 1.0 if ok else 0.0

    return SimpleNamespace(square_sum=square_sum, collect=collect, decide=decide)


def _blocks(n):
    return max(1, min(math.ceil(n / config.FLAT_BLOCK), 8 * multiprocessors()))


class StepChecks:
    """The report and gate of a device training step over the arrays ``names`` (gradients and parameters by
    the same names).

    Parameters
    ----------
    names : sequence of str
    dtype : numpy dtype
        Of the gradients (the gate is in it).
    """

    def __init__(self, names, dtype):
        self.names = tuple(names)
        self.dtype = np.dtype(dtype)
        n = len(self.names)
        self.report = zeros((FIRST + 3 * n,), np.float64)
        self.gate = empty((2,), self.dtype)
        self._no_penalty = zeros((1,), np.float64)

    def _sums(self, arrays, sq_first, bad_first):
        k_ = _check_kernels(self.dtype.str)
        square_sum, collect = k_.square_sum, k_.collect
        NT = config.FLAT_BLOCK
        for j, name in enumerate(self.names):
            a = flat(arrays[name])
            blocks = _blocks(a.size)
            partial = empty((blocks, 2), np.float64)
            square_sum[blocks, NT](a, partial)
            collect[1, 1](partial, self.report, sq_first + j if sq_first >= 0 else -1, bad_first + j)

    @quiet_launches
    def gradients(self, loss, grads, max_norm=None, penalty=None):
        """Check the loss (device (1,)) and ``grads`` and set the gate; returns the gate for the optimizer.

        ``max_norm`` (a float > 0) clips the global norm to it, as
        :func:`kinn_ref.training.clipping.clip_by_global_norm` does (here by scaling in the update);
        ``penalty`` (device float64 (1,)) goes into the report as it is."""
        n = len(self.names)
        self._sums(grads, FIRST, FIRST + n)
        decide = _check_kernels(self.dtype.str).decide
        decide[1, 1](loss, self._no_penalty if penalty is None else penalty, self.report, n,
                     scalar(np.float64, max_norm or 0.0), self.gate)
        return self.gate

    @quiet_launches
    def parameters(self, params):
        """Count the non-finite entries of every parameter (after the update; the trainer's
        ``_check_finite`` of the parameters)."""
        n = len(self.names)
        self._sums(params, -1, FIRST + 2 * n)

    def read(self):
        """The report on the host (the step's one copy): a dict with ``loss``, ``norm``, ``applied``,
        ``penalty`` (without its strength) and, by name, ``bad_gradients`` and ``bad_parameters`` (counts of
        non-finite entries, only those above 0)."""
        r = self.report.copy_to_host()
        n = len(self.names)
        bad_g, bad_p = r[FIRST + n:FIRST + 2 * n], r[FIRST + 2 * n:]
        return {"loss": float(r[LOSS]), "norm": float(r[NORM]), "applied": bool(r[APPLY]),
                "penalty": float(r[PENALTY]),
                "bad_gradients": {k: int(c) for k, c in zip(self.names, bad_g) if c},
                "bad_parameters": {k: int(c) for k, c in zip(self.names, bad_p) if c}}
