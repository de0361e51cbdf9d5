"""The affine layer ``y = x W^T + b`` over the last axis on the device (a network head, an MLP layer).

Twins of :meth:`kinn_ref.network.Linear.forward` and :meth:`~kinn_ref.network.Linear.backward`, on the
kernels of the KINN layers' input projection (:func:`.linalg.projection.project`,
:func:`.linalg.projection.project_vjp`): the tiled product, or the thin kernels for few input features, with
reductions in a fixed order.
"""
from ..launch_warnings import quiet_launches
from .linalg.projection import project, project_vjp


def _rows(a):
    """``a`` as rows of its last axis (a view)."""
    return a.reshape(a.size // a.shape[a.ndim - 1], a.shape[a.ndim - 1])


@quiet_launches
def linear_forward(x, W, b):
    """``x W^T + b`` (twin of :meth:`kinn_ref.network.Linear.forward`).

    Parameters
    ----------
    x : device array (..., in_features)
    W : device array (out_features, in_features)
    b : device array (out_features,)

    Returns
    -------
    device array (..., out_features)
    """
    y = project(_rows(x), W, b)
    return y.reshape(tuple(x.shape[:x.ndim - 1]) + (W.shape[0],))


@quiet_launches
def linear_backward(x, W, dy):
    """Gradients of ``sum(dy * (x W^T + b))`` (twin of :meth:`kinn_ref.network.Linear.backward`).

    Returns
    -------
    dW : device array (out_features, in_features)
        ``dy^T x`` over all leading axes.
    db : device array (out_features,)
        ``dy`` summed over all leading axes.
    dx : device array, shape of ``x``
        ``dy W``.
    """
    dW, db, dx = project_vjp(_rows(x), W, _rows(dy))
    return dW, db, dx.reshape(x.shape)
