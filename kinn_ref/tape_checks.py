"""What a tape records of its forward pass, and the checks ``backward`` makes against it.

Every backend's tape keeps its own copy of what its backward pass reads (the input ``x`` and the initial
state, copied where the backend does not already hold a copy of its own), the spec, the dtype and a copy of
the parameters (small next to the kept states). ``backward`` refuses, with
:class:`~kinn_ref.errors.TapeMismatchError`, a spec that differs from the forward pass's, parameters of
another dtype, or parameters whose values changed since the forward pass; the check compares the
parameters with the copy (one pass over them; values equal to the copy are finite, as the forward pass
checked them).
"""
from dataclasses import fields

import numpy as np

from .errors import TapeMismatchError
from .parameterization import check_params
from .spec import check_spec


def copy_params(params):
    """Copies of the parameter arrays (C-ordered), keyed like ``params``: what the tape compares with."""
    return {k: np.array(v, order="C", copy=True) for k, v in params.items()}


def check_spec_matches(tape, spec):
    """Refuse ``spec`` unless it equals the spec of the pass recorded in ``tape``.

    Raises
    ------
    ValueError
        When ``spec`` is not a LayerSpec.
    TapeMismatchError
        Naming every field that differs, with its value here and in the forward pass.
    """
    check_spec(spec)
    recorded = tape.spec
    if spec == recorded:
        return spec
    diff = [f.name for f in fields(spec) if getattr(spec, f.name) != getattr(recorded, f.name)]
    changes = "; ".join(f"{name} is {getattr(spec, name)!r} here, {getattr(recorded, name)!r} in the forward pass"
                        for name in diff)
    raise TapeMismatchError(f"spec differs from the spec of the forward pass that recorded the tape: {changes}; "
                            "pass the forward pass's spec (tape.spec), or run forward again with this one", "spec")


def check_dtype_matches(tape, dtype, name="params"):
    """Refuse parameters of ``dtype`` for a tape recorded in another dtype (:class:`TapeMismatchError`)."""
    if np.dtype(dtype) != tape.dtype:
        raise TapeMismatchError(f"{name} dtype {np.dtype(dtype)} vs tape {tape.dtype}: backward needs the {name} of "
                                f"the forward pass, in its dtype {tape.dtype}", name)


def check_values_match(recorded, params, name="params"):
    """Refuse ``params`` whose values differ from the copies ``recorded`` at the forward pass.

    Raises
    ------
    TapeMismatchError
        Naming the first changed array, how many of its values changed and the largest change.
    """
    for key, before in recorded.items():
        now = params[key]
        if np.array_equal(now, before):
            continue
        changed = np.asarray(now != before)
        largest = float(np.max(np.abs(np.asarray(now, np.float64) - before)))
        raise TapeMismatchError(
            f"{name}[{key!r}] changed since the forward pass ({int(changed.sum())} of {changed.size} values, by up "
            f"to {largest:.3g}): backward needs the {name} the forward pass ran with; update them after backward, "
            "or run forward again", f"{name}[{key!r}]")


def check_tape(tape, spec, params):
    """The checks of a host ``backward``: ``spec``, then ``params`` (valid, same dtype, unchanged).

    Parameters
    ----------
    tape : Tape or DeviceTape
        A tape with ``spec``, ``dtype`` and ``params_copy`` (the copies made by its forward pass).
    spec : LayerSpec
    params : dict of ndarray

    Returns
    -------
    numpy.dtype
        The dtype of the computation.

    Raises
    ------
    ValueError
        For a ``spec`` or ``params`` that is not valid at all (see :func:`~kinn_ref.parameterization.check_params`).
    TapeMismatchError
        For a spec, dtype or parameter values other than the forward pass's.
    """
    check_spec_matches(tape, spec)
    dtype = check_params(spec, params, finite=False)
    check_dtype_matches(tape, dtype)
    if not all(np.array_equal(params[k], before) for k, before in tape.params_copy.items()):
        check_params(spec, params)       # a non-finite value is named as such before the mismatch
        check_values_match(tape.params_copy, params)
    # equal to the copy, which the forward pass checked: finite
    return dtype
