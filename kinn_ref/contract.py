"""What every backend shares of the functional contract (docs/math.md, section 7): the host tape, its repr,
the layout of the input and the checks ``backward`` makes before it computes anything.

The NumPy reference (:mod:`kinn_ref.reference`), the ``numba`` backend and the ``cuda`` backend import these
from here, so that a rule of the contract is written once.
"""
from dataclasses import dataclass, field

import numpy as np

from ._checks import check_array, check_choice, check_positive_int
from .divergence import check_divergence, refuse_unstable_tape
from .parameterization import check_params
from .tape_checks import check_tape
from .tape_memory import check_tape_memory


@dataclass
class Tape:
    """What a forward pass keeps for its backward pass.

    Attributes
    ----------
    spec : LayerSpec
    backend : str
        Name of the backend that ran the forward pass (its backward is used).
    x : ndarray
        A copy of the input (the caller's array may change after the forward pass).
    currents : ndarray, shape (B, T, N)
        Input current of the first cell at each step (eq. 3).
    states : dict of int -> ndarray (B, K, N)
        Stacked states kept by step index (all of them, or every ``checkpoint_every``-th).
    n_steps : int
    sequence : bool
        Whether ``x`` was a sequence.
    has_V0 : bool
        Whether an initial state was given (its gradient is then returned).
    nonfinite : tuple of (int, int) or None
        ``(step, cell)`` of the first non-finite state when the pass was run with ``on_nonfinite="flag"``.
    dtype : numpy.dtype
        Dtype of the computation (of ``params``).
    params_copy : dict of ndarray
        Copies of the parameters the pass ran with; ``backward`` refuses others
        (:func:`kinn_ref.tape_checks.check_tape`).
    unstable : kinn_ref.divergence.Unstable or None
        Set when the pass was run with ``on_nonfinite="flag"`` and a ``dt`` outside the integrator's stable
        region (:mod:`kinn_ref.divergence`); ``backward`` refuses such a tape.
    """

    spec: object
    backend: str
    x: np.ndarray
    currents: np.ndarray
    states: dict
    n_steps: int
    sequence: bool
    has_V0: bool
    checkpoint_every: int = None
    nonfinite: tuple = None
    circuit: object = field(default=None, repr=False)
    coupling: object = field(default=None, repr=False)
    ctx: object = field(default=None, repr=False)
    output_shape: tuple = None
    dtype: object = None
    params_copy: dict = field(default=None, repr=False)
    unstable: object = None

    def __repr__(self):
        return tape_repr(self, self.currents.dtype, {"x": self.x, "currents": self.currents}, self.nonfinite)


def _shape(array):
    return str(tuple(int(n) for n in array.shape))


def tape_repr(tape, dtype, arrays, nonfinite=None):
    """Concise repr of a tape: spec summary, backend, dtype, batch, steps and array shapes (no values).

    Parameters
    ----------
    tape : Tape or DeviceTape
    dtype : numpy.dtype
    arrays : dict of str -> array
        The arrays to show by shape (host or device arrays: anything with ``shape``).
    nonfinite : tuple of (int, int), optional
        ``(step, cell)`` of the first non-finite state, when known.

    Returns
    -------
    str
    """
    shapes = sorted({_shape(a) for a in tape.states.values() if a is not None})
    kept = f"{len(tape.states)} kept" + (f" of {' or '.join(shapes)}" if shapes else "")
    parts = [f"spec=<{tape.spec.summary()}>", f"backend={tape.backend!r}", f"dtype={np.dtype(dtype).name}",
             f"batch={tape.x.shape[0]}", f"n_steps={tape.n_steps}", f"sequence={tape.sequence}"]
    parts += [f"{name}={_shape(a)}" for name, a in arrays.items()]
    parts.append(f"states={kept}")
    if tape.checkpoint_every is not None:
        parts.append(f"checkpoint_every={tape.checkpoint_every}")
    if tape.output_shape is not None:
        parts.append(f"output={tuple(tape.output_shape)}")
    if nonfinite is not None:
        parts.append(f"nonfinite(step, cell)={nonfinite}")
    unstable = getattr(tape, "unstable", None)
    if unstable is not None:
        parts.append(f"unstable(dt, dt_max)=({unstable.dt:g}, {unstable.dt_max:g})")
    return f"{type(tape).__name__}({', '.join(parts)})"


def input_layout(spec, x, dtype):
    """Validate ``x``; return ``(sequence, B, T)``.

    Static input is ``(B, D)`` (grid: ``(B, P, D)``); sequence input ``(B, T, D)`` (grid: ``(B, T, P, D)``).
    """
    static_ndim = 3 if spec.coupling == "grid" else 2
    if not isinstance(x, np.ndarray) or x.ndim not in (static_ndim, static_ndim + 1):
        got = x.shape if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"x must be a numpy.ndarray of shape {spec.input_shape('B')} (static) or "
                         f"{spec.input_shape('B', 'T')} (sequence), got {got}")
    sequence = x.ndim == static_ndim + 1
    feature = spec.input_shape(None)[1:]
    check_array("x", x, (None,) * (x.ndim - len(feature)) + feature, dtype)
    B = x.shape[0]
    T = x.shape[1] if sequence else spec.n_steps
    if B < 1 or T < 1:
        raise ValueError(f"x must have at least one batch row and one step, got shape {x.shape}")
    return sequence, B, T


@dataclass(frozen=True)
class ForwardCall:
    """What :func:`check_forward` found of a forward call's arguments."""
    dtype: np.dtype
    sequence: bool
    B: int
    T: int
    V0: object              # the checked initial state, or None
    checkpoint_every: object  # int, or None
    unstable: object        # the :class:`~kinn_ref.divergence.Unstable` record with on_nonfinite="flag", or None


def check_forward(spec, params, x, V0, checkpoint_every, on_nonfinite, *, host_tape=True, default_interval=None):
    """The checks every backend's ``forward`` makes before computing, in this order: the parameters (their
    dtype is the computation's), the input layout, ``on_nonfinite``, ``checkpoint_every``, the host memory
    the tape will take (when ``host_tape``; the tape keeps every ``checkpoint_every``-th state, else every
    ``default_interval``-th, else all), a ``dt`` outside the stable region (:mod:`kinn_ref.divergence`) and
    ``V0``.

    Returns a :class:`ForwardCall`. Every refusal is a ValueError naming the argument (or a
    :class:`~kinn_ref.errors.TapeMemoryError` / :class:`~kinn_ref.errors.DivergentStepError`).
    """
    dtype = check_params(spec, params)
    sequence, B, T = input_layout(spec, x, dtype)
    check_choice("on_nonfinite", on_nonfinite, ("raise", "flag"))
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
    if host_tape:
        check_tape_memory(spec, x, dtype, checkpoint_every or default_interval)
    unstable = check_divergence(spec, params, on_nonfinite, T)
    if V0 is not None:
        V0 = check_array("V0", V0, (B, spec.order, spec.total_nodes), dtype)
    return ForwardCall(dtype, sequence, B, T, V0, checkpoint_every, unstable)


def check_backward(tape, spec, params, dy):
    """The checks every backend's ``backward`` makes before computing: the tape's spec, dtype and parameters
    (:func:`~kinn_ref.tape_checks.check_tape`), a forward pass that went non-finite or ran outside the stable
    region (nothing to differentiate), and ``dy`` of the tape's output shape and dtype. Returns the dtype.

    Raises
    ------
    TapeMismatchError
        When ``spec`` or ``params`` are not those of the forward pass.
    ValueError
        For a tape of a non-finite or unstable pass, or a ``dy`` of another shape or dtype.
    """
    dtype = check_tape(tape, spec, params)
    if tape.nonfinite is not None:
        raise ValueError(f"tape holds a non-finite forward pass (step {tape.nonfinite[0]}, cell "
                         f"{tape.nonfinite[1]}); there is no gradient to compute")
    refuse_unstable_tape(tape)
    check_array("dy", dy, tape.output_shape, dtype)
    return dtype
