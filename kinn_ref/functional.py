"""The functional contract (docs/math.md, section 7): ``forward`` and ``backward`` by backend name."""
from .backends import get_backend


def forward(spec, params, x, V0=None, backend="numpy", *, checkpoint_every=None, on_nonfinite="raise"):
    """Run one KINN layer on ``backend`` (``"numpy"``, ``"numba"``, ``"cuda"`` or ``"auto"``).

    See :func:`kinn_ref.reference.forward` for the arguments; every backend accepts the same ones and
    returns ``(y, tape)``. The backend is resolved once and the arguments are checked once, by
    :func:`kinn_ref.contract.check_forward` in the backend's ``forward``.
    """
    return get_backend(backend, spec).forward(spec, params, x, V0, checkpoint_every=checkpoint_every,
                                              on_nonfinite=on_nonfinite)


def backward(spec, params, tape, dy):
    """Gradients for the pass in ``tape``, computed by the backend that recorded it.

    Returns a dict with the keys of ``params`` plus ``"x"`` (and ``"V0"`` when an initial state was given).
    ``spec`` and ``params`` must be those of the forward pass (update the parameters after ``backward``):
    another spec, dtype or parameter values raise :class:`~kinn_ref.errors.TapeMismatchError`.
    """
    backend = getattr(tape, "backend", None)
    if backend is None:
        raise ValueError(f"tape must be the tape returned by forward, got {type(tape).__name__}")
    return get_backend(backend).backward(spec, params, tape, dy)
