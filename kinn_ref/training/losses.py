"""Losses, each returning its value and its hand-derived gradient with respect to the prediction.

Every loss is a mean over the batch (the first axis), so gradients of different batch sizes are on one
scale. ``loss(pred, target) -> (value, d_pred)`` with ``d_pred = dLoss/dpred``, same shape as ``pred``.
"""
import numpy as np

from .._checks import check_choice


def _check_pair(pred, target):
    if not isinstance(pred, np.ndarray) or pred.ndim < 1:
        raise ValueError(f"pred must be a numpy.ndarray with a batch axis, got {type(pred).__name__}")
    if not isinstance(target, np.ndarray) or target.shape != pred.shape:
        got = target.shape if isinstance(target, np.ndarray) else type(target).__name__
        raise ValueError(f"target must be a numpy.ndarray of the shape of pred {pred.shape}, got {got}")


def mse(pred, target):
    """Mean squared error ``L = mean((pred - target)^2)`` over all entries.

    Parameters
    ----------
    pred, target : ndarray, shape (B, ...)

    Returns
    -------
    value : float
    d_pred : ndarray, shape of ``pred``
        ``2 (pred - target) / pred.size``.
    """
    _check_pair(pred, target)
    r = pred - target
    return float(np.mean(r * r)), (2.0 / r.size) * r


def relative_l2(pred, target, eps=1e-12):
    """Mean over the batch of ``||pred_b - target_b|| / ||target_b||`` (norms over all non-batch axes).

    Parameters
    ----------
    pred, target : ndarray, shape (B, ...)
    eps : float
        Added to ``||target_b||`` so a zero target does not divide by zero.

    Returns
    -------
    value : float
    d_pred : ndarray, shape of ``pred``
        ``(pred_b - target_b) / (B ||pred_b - target_b|| ||target_b||)``; zero where the residual is zero
        (the subgradient at the minimum).
    """
    _check_pair(pred, target)
    B = pred.shape[0]
    r = (pred - target).reshape(B, -1)
    rn = np.linalg.norm(r, axis=1)
    tn = np.linalg.norm(target.reshape(B, -1), axis=1) + eps
    safe = np.where(rn > 0, rn, 1.0)
    d = np.where(rn[:, None] > 0, r / (B * safe * tn)[:, None], 0.0)
    return float(np.mean(rn / tn)), d.reshape(pred.shape).astype(pred.dtype, copy=False)


def log_softmax(logits):
    """``log softmax`` over the last axis, computed without overflow."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``.

    Parameters
    ----------
    logits : ndarray, shape (B, n_classes)
    labels : ndarray of int, shape (B,)

    Returns
    -------
    value : float
        ``-mean_b log softmax(logits_b)[labels_b]``.
    d_logits : ndarray, shape (B, n_classes)
        ``(softmax(logits) - onehot(labels)) / B``.
    """
    if not isinstance(logits, np.ndarray) or logits.ndim != 2:
        got = logits.shape if isinstance(logits, np.ndarray) else type(logits).__name__
        raise ValueError(f"logits must be a numpy.ndarray of shape (B, n_classes), got {got}")
    labels = np.asarray(labels)
    B, n_classes = logits.shape
    if labels.shape != (B,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an integer array of shape ({B},), got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got range [{labels.min()}, {labels.max()}]")
    logp = log_softmax(logits)
    rows = np.arange(B)
    d = np.exp(logp)
    d[rows, labels] -= 1.0
    return float(-logp[rows, labels].mean()), d / B


def accuracy(logits, labels):
    """Fraction of rows whose largest logit is at the label."""
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(labels)))


def mean_relative_l2(pred, target):
    """The value of :func:`relative_l2` (a metric: no gradient)."""
    return relative_l2(pred, target)[0]


LOSSES = {"mse": mse, "relative_l2": relative_l2, "cross_entropy": softmax_cross_entropy}
METRICS = {"accuracy": accuracy, "relative_l2": mean_relative_l2, "mse": lambda p, t: mse(p, t)[0]}


def get_loss(name):
    """The loss function called ``name`` (``"mse"``, ``"relative_l2"``, ``"cross_entropy"``)."""
    return LOSSES[check_choice("loss", name, tuple(LOSSES))]
