"""The memory a forward pass keeps for its backward pass (its tape), checked before the pass runs.

A forward pass keeps the stacked state ``(B, K, N)`` of every step (or of every ``checkpoint_every``-th
step), the input currents ``(B, T, N)`` of a sequence input, with ``return_sequences`` the readout of
every step ``(B, T, W)``, and copies of the input ``x`` and of the parameters. When that exceeds the memory available, :func:`check_tape_memory` refuses the pass
at once with :class:`~kinn_ref.errors.TapeMemoryError`, naming the size and the smallest ``checkpoint_every``
whose tape takes at most half of that memory (:data:`SUGGESTION_SHARE`), instead of letting it run until an
allocation fails at an arbitrary step.

The available memory is ``MemAvailable`` of ``/proc/meminfo`` (``os.sysconf("SC_AVPHYS_PAGES")`` where there
is none), capped by the headroom of a cgroup v2 memory limit; where none can be read the check is skipped.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import TapeMemoryError

#: The ``checkpoint_every`` suggested by the refusal keeps the tape within this share of the available
#: memory, leaving the rest to the pass's other arrays and the backward pass's gradients.
SUGGESTION_SHARE = 0.5

MEMINFO = Path("/proc/meminfo")
CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class TapeSize:
    """Bytes a forward pass keeps, by part.

    Attributes
    ----------
    kept_states : int
        How many stacked states ``(B, K, N)`` are kept (step 0, every ``checkpoint_every``-th and the last).
    state_bytes : int
        Bytes of one stacked state.
    other_bytes : int
        Input currents of a sequence input and per-step readouts (``return_sequences``): what checkpoints do
        not reduce.
    copy_bytes : int
        The tape's copies of the input ``x`` and of the parameters.
    """

    kept_states: int
    state_bytes: int
    other_bytes: int
    copy_bytes: int = 0

    @property
    def total(self):
        return self.kept_states * self.state_bytes + self.other_bytes + self.copy_bytes


def kept_state_count(n_steps, checkpoint_every=None):
    """States a pass of ``n_steps`` steps keeps: step 0, every ``checkpoint_every``-th step and the last."""
    every = checkpoint_every or 1
    return 1 + n_steps // every + (1 if n_steps % every else 0)


def tape_size(spec, batch, n_steps, sequence, dtype, checkpoint_every=None):
    """The size of the tape of one forward pass.

    Parameters
    ----------
    spec : LayerSpec
    batch, n_steps : int
        ``B`` and ``T``.
    sequence : bool
        Whether the input is a sequence (its currents are then stored per step; a static input's are not).
    dtype : numpy.dtype
        Dtype of the computation.
    checkpoint_every : int, optional

    Returns
    -------
    TapeSize
    """
    item = np.dtype(dtype).itemsize
    state = batch * spec.order * spec.total_nodes * item
    other = (batch * n_steps * spec.total_nodes * item if sequence else 0)
    if spec.return_sequences:
        other += batch * n_steps * spec.readout_width * item
    x_values = batch * (n_steps if sequence else 1) * spec.n_points * spec.in_features
    param_values = sum(math.prod(shape) for shape in spec.param_shapes().values())
    return TapeSize(kept_state_count(n_steps, checkpoint_every), state, other, (x_values + param_values) * item)


def _meminfo_available():
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom():
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((CGROUP / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


#: Tapes up to this size are not checked: reading the available memory costs more than a pass that small
#: (a tenth of a millisecond per call, a few percent of a small training step).
SMALL_TAPE_BYTES = 16 * 2 ** 20


def available_memory():
    """Bytes of memory a new allocation can get now, or None where this cannot be read."""
    known = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    return min(known) if known else None


def fitting_interval(size, n_steps, available):
    """The smallest ``checkpoint_every`` whose tape, plus the states the backward pass recomputes for one
    segment (``checkpoint_every`` of them), fits in ``available`` bytes; None when none does.

    Parameters
    ----------
    size : TapeSize
    n_steps : int
    available : int

    Returns
    -------
    int or None
    """
    room = available - size.other_bytes - size.copy_bytes
    # kept states plus one segment, 1 + ceil(T/m) + m, is smallest near m = sqrt(T): no larger m fits better
    for every in range(1, math.isqrt(n_steps) + 2):
        if (kept_state_count(n_steps, every) + every) * size.state_bytes <= room:
            return every
    return None


def _size(n):
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale / 8:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_tape_memory(spec, x, dtype, checkpoint_every=None):
    """Refuse a forward pass whose tape does not fit in the memory available now (tapes of at most
    :data:`SMALL_TAPE_BYTES` are let through without reading it).

    Parameters
    ----------
    spec : LayerSpec
    x : ndarray
        The (validated) input: ``(B, ...)`` static or ``(B, T, ...)`` sequence.
    dtype : numpy.dtype
        Dtype of the computation.
    checkpoint_every : int, optional
        The interval the pass keeps states at.

    Returns
    -------
    TapeSize

    Raises
    ------
    TapeMemoryError
        With the tape's size, the memory available and the ``checkpoint_every`` that fits (if one does).
    """
    sequence = x.ndim == (4 if spec.coupling == "grid" else 3)
    batch, n_steps = x.shape[0], (x.shape[1] if sequence else spec.n_steps)
    size = tape_size(spec, batch, n_steps, sequence, dtype, checkpoint_every)
    if size.total <= SMALL_TAPE_BYTES:
        return size
    available = available_memory()
    if available is None or size.total <= available:
        return size
    every = fitting_interval(size, n_steps, int(available * SUGGESTION_SHARE))
    parts = f"{size.kept_states} kept states of {_size(size.state_bytes)}"
    if size.other_bytes:
        parts += f" + {_size(size.other_bytes)} of per-step currents and readouts"
    parts += f" + {_size(size.copy_bytes)} of copies of x and params"
    if every is not None:
        kept = tape_size(spec, batch, n_steps, sequence, dtype, every)
        hint = (f"pass checkpoint_every={every} (keeps {kept.kept_states} states, {_size(kept.total)}; the "
                "backward pass recomputes the others, with identical results), or a smaller batch")
    else:
        hint = ("no checkpoint_every makes it fit"
                + (" (the per-step currents and readouts alone are too large)" if size.other_bytes else "")
                + "; use a smaller batch or fewer steps")
    raise TapeMemoryError(
        f"the forward pass needs about {_size(size.total)} for its tape (batch {batch}, {n_steps} steps, order "
        f"{spec.order}, {spec.total_nodes} nodes, {np.dtype(dtype)}: {parts}) but {_size(available)} of memory "
        f"is available; {hint}", needed=size.total, available=available, checkpoint_every=every)
