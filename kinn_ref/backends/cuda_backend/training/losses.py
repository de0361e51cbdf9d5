"""Training losses on the device, each returning its value and its gradient with respect to the prediction.

Twins of :mod:`kinn_ref.training.losses`: every loss is a mean over the batch (the first axis), the value a
device array (1,) reduced in a fixed order, the gradient a device array of the prediction's shape. Nothing is
copied to the host.
"""
from types import SimpleNamespace
import math

import numpy as np

from ...launch_warnings import quiet_launches
from ..runtime import config
from ..runtime.compat import cuda_module
from ..runtime.device import block_sum, empty, flat, is_device_array, kernel_cache, scalar

cuda = cuda_module()


def _check_pair(pred, target, same_shape=True):
    if not is_device_array(pred) or pred.ndim < 1 or not is_device_array(target):
        raise ValueError("pred and target must be device arrays with a batch axis")
    if same_shape and (tuple(pred.shape) != tuple(target.shape) or pred.dtype != target.dtype):
        raise ValueError(f"pred and target must be device arrays of one shape and dtype, got {pred.shape} "
                         f"{pred.dtype} and {target.shape} {target.dtype}")


@kernel_cache
def _mse_kernels(dtype):
    nb = {4: np.float32, 8: np.float64}[np.dtype(dtype).itemsize]
    zero = np.dtype(dtype).type(0.0)
    NT = config.FLAT_BLOCK

    @cuda.jit
    def residual(y, t, scale, dy, partial):
        """``dy = scale (y - t)``; each block's sum of ``(y - t)^2`` (tree in shared memory) into ``partial``."""
        red = cuda.shared.array(NT, nb)
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        acc = zero
        while i < y.shape[0]:
            r = y[i] - t[i]
            dy[i] = scale * r
            acc += r * r
            i += stride
        tid = cuda.threadIdx.x
        red[tid] = acc
        block_sum(red, tid)
        if tid == 0:
            partial[cuda.blockIdx.x] = red[0]

    @cuda.jit
    def finish(partial, inv_size, loss):
        if cuda.grid(1) == 0:
            acc = zero
            for j in range(partial.shape[0]):
                acc += partial[j]
            loss[0] = acc * inv_size

    return SimpleNamespace(residual=residual, finish=finish)


@quiet_launches
def mse_loss(y, target):
    """Mean squared error on the device (twin of :func:`kinn_ref.training.losses.mse`).

    Parameters
    ----------
    y, target : device arrays of one shape and dtype

    Returns
    -------
    loss : device array (1,)
        ``mean((y - target)^2)``, reduced in a fixed order.
    dy : device array, shape of ``y``
        ``2 (y - target) / y.size``.
    """
    _check_pair(y, target)
    k_ = _mse_kernels(y.dtype.str)
    residual, finish = k_.residual, k_.finish
    NT = config.FLAT_BLOCK
    blocks = max(1, min(math.ceil(y.size / NT), 8 * NT))
    partial = empty((blocks,), y.dtype)
    dy = empty(y.shape, y.dtype)
    residual[blocks, NT](flat(y), flat(target), scalar(y.dtype, 2.0 / y.size), flat(dy), partial)
    loss = empty((1,), y.dtype)
    finish[1, 1](partial, scalar(y.dtype, 1.0 / y.size), loss)
    return loss, dy


@kernel_cache
def _row_kernels(dtype):
    """Kernels with one thread per batch row (the rows of a training batch are few; each row's sums run in
    element order), and the mean of the rows' losses in row order."""
    cast = np.dtype(dtype).type       # the row count in the dtype: B / float32 must not promote to float64
    zero, one = cast(0.0), cast(1.0)

    @cuda.jit
    def relative_l2_rows(p, t, eps, d, row_loss):
        """Row ``b``: ``rn = ||p_b - t_b||``, ``tn = ||t_b|| + eps``; ``row_loss[b] = rn / tn`` and
        ``d_b = (p_b - t_b) / (B rn tn)`` (zero where ``rn = 0``)."""
        b = cuda.grid(1)
        B, F = p.shape
        if b < B:
            rr = zero
            tt = zero
            for j in range(F):
                r = p[b, j] - t[b, j]
                rr += r * r
                tt += t[b, j] * t[b, j]
            rn = math.sqrt(rr)
            tn = math.sqrt(tt) + eps
            row_loss[b] = rn / tn
            denom = (cast(B) * (rn if rn > zero else one)) * tn
            for j in range(F):
                d[b, j] = (p[b, j] - t[b, j]) / denom if rn > zero else zero

    @cuda.jit
    def cross_entropy_rows(z, labels, d, row_loss):
        """Row ``b``: ``logp = z_b - max(z_b) - log(sum exp(z_b - max))``; ``row_loss[b] = -logp[label]``,
        ``d_b = (exp(logp) - onehot(label)) / B``."""
        b = cuda.grid(1)
        B, C = z.shape
        if b < B:
            m = z[b, 0]
            for c in range(1, C):
                if z[b, c] > m:
                    m = z[b, c]
            s = zero
            for c in range(C):
                s += math.exp(z[b, c] - m)
            log_s = math.log(s)
            label = labels[b]
            row_loss[b] = -((z[b, label] - m) - log_s)
            for c in range(C):
                e = math.exp((z[b, c] - m) - log_s)
                d[b, c] = ((e - one) if c == label else e) / cast(B)

    @cuda.jit
    def mean_rows(row_loss, loss):
        if cuda.grid(1) == 0:
            acc = zero
            for b in range(row_loss.shape[0]):
                acc += row_loss[b]
            loss[0] = acc / cast(row_loss.shape[0])

    return SimpleNamespace(relative_l2_rows=relative_l2_rows, cross_entropy_rows=cross_entropy_rows,
                           mean_rows=mean_rows)


def _row_launch(kern, B, *args):
    NT = config.FLAT_BLOCK
    kern[math.ceil(B / NT), NT](*args)


@quiet_launches
def relative_l2_loss(pred, target, eps=1e-12):
    """Mean over the batch of ``||pred_b - target_b|| / (||target_b|| + eps)`` on the device (twin of
    :func:`kinn_ref.training.losses.relative_l2`).

    Parameters
    ----------
    pred, target : device arrays (B, ...) of one shape and dtype
    eps : float

    Returns
    -------
    loss : device array (1,)
    d_pred : device array, shape of ``pred``
        ``(pred_b - target_b) / (B ||pred_b - target_b|| (||target_b|| + eps))``; zero where the residual is
        zero.
    """
    _check_pair(pred, target)
    k_ = _row_kernels(pred.dtype.str)
    rows, mean_rows = k_.relative_l2_rows, k_.mean_rows
    B = pred.shape[0]
    p2, t2 = pred.reshape(B, pred.size // B), target.reshape(B, target.size // B)
    d = empty(p2.shape, pred.dtype)
    row_loss = empty((B,), pred.dtype)
    _row_launch(rows, B, p2, t2, scalar(pred.dtype, eps), d, row_loss)
    loss = empty((1,), pred.dtype)
    mean_rows[1, 1](row_loss, loss)
    return loss, d.reshape(pred.shape)


@quiet_launches
def cross_entropy_loss(logits, labels):
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)`` on the device (twin of
    :func:`kinn_ref.training.losses.softmax_cross_entropy`).

    Parameters
    ----------
    logits : device array (B, n_classes)
    labels : device array of int (B,)
        In ``[0, n_classes)`` (checked on the host when the labels are uploaded).

    Returns
    -------
    loss : device array (1,)
    d_logits : device array (B, n_classes)
        ``(softmax(logits) - onehot(labels)) / B``.
    """
    _check_pair(logits, labels, same_shape=False)
    B = logits.shape[0]
    if logits.ndim != 2 or tuple(labels.shape) != (B,) or labels.dtype.kind not in "iu":
        raise ValueError(f"logits must be (B, n_classes) and labels integers of shape (B,), got {logits.shape} "
                         f"and {labels.dtype} {labels.shape}")
    k_ = _row_kernels(logits.dtype.str)
    rows, mean_rows = k_.cross_entropy_rows, k_.mean_rows
    d = empty(logits.shape, logits.dtype)
    row_loss = empty((B,), logits.dtype)
    _row_launch(rows, B, logits, labels, d, row_loss)
    loss = empty((1,), logits.dtype)
    mean_rows[1, 1](row_loss, loss)
    return loss, d


#: Device twins of :data:`kinn_ref.training.losses.LOSSES`, by the same names.
DEVICE_LOSSES = {"mse": mse_loss, "relative_l2": relative_l2_loss, "cross_entropy": cross_entropy_loss}
