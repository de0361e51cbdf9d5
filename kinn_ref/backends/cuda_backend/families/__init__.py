"""The kernel families that run a layer's passes, and the one table that chooses among them.

:data:`FAMILIES` is ordered: a layer runs on the first family whose rule accepts its spec and dtype (the
name is what ``tape.family`` says). Within the ``cell`` family, a pass runs on the kernels built for its
``T`` when :func:`static_cell_pass` accepts it, else on the span kernels.

============== ============================== ===============================================================
family         module                         rule
============== ============================== ===============================================================
``cell``       :mod:`.families.cell`          coupling ``none``: every step and cell of a node in one thread
                                              (:mod:`.families.cell_kernels`; :mod:`.families.cell_static`
                                              when :func:`static_cell_pass` accepts the pass)
``persistent`` :mod:`.families.persistent`    dense or kirchhoff, one cell, at most ``PERSISTENT_MAX_N``
                                              nodes, euler or expeuler, not the derivative readout, and its
                                              tiles fit the block's shared memory: all steps in one launch
``stepper``    :mod:`.families.step`          every other spec: one launch per step (and stage)
============== ============================== ===============================================================
"""
import importlib
from typing import Callable, NamedTuple

import numpy as np

from ..runtime import config


class Family(NamedTuple):
    """A row of :data:`FAMILIES`: ``name`` (the tape's ``family``), ``module`` (under ``families/``, imported
    on first use) and ``accepts(spec, dtype)``."""
    name: str
    module: str
    accepts: Callable

    def load(self):
        """The family's module (``forward``, ``backward``, ``default_interval``)."""
        return importlib.import_module(f"{__name__}.{self.module}")


def _uncoupled(spec, dtype):
    return spec.coupling == "none"


def _persistent(spec, dtype):
    if spec.coupling not in ("dense", "kirchhoff") or spec.order != 1 or spec.readout == "derivatives" \
            or spec.integrator not in ("euler", "expeuler") or spec.total_nodes > config.PERSISTENT_MAX_N:
        return False
    from ..runtime.device import max_shared_per_block
    from .persistent import shared_bytes
    need = max(shared_bytes(spec.total_nodes, np.dtype(dtype).itemsize))
    return need <= min(config.PERSISTENT_MAX_SHARED, max_shared_per_block())


def _any(spec, dtype):
    return True


#: The families in the order they are tried.
FAMILIES = (Family("cell", "cell", _uncoupled), Family("persistent", "persistent", _persistent),
            Family("stepper", "step", _any))


def choose(spec, dtype):
    """The first row of :data:`FAMILIES` that accepts ``spec`` in ``dtype``."""
    return next(f for f in FAMILIES if f.accepts(spec, dtype))


def by_name(name):
    """The row of :data:`FAMILIES` called ``name`` (a tape's ``family``)."""
    return next(f for f in FAMILIES if f.name == name)


def static_cell_pass(spec, sequence, T, explicit_interval):
    """Whether a ``cell`` pass runs on the kernels built for its ``T`` (:mod:`.families.cell_static`): a static
    input projected in the kernel, at most ``CELL_STATIC_MAX_T`` steps, an integrator whose kernel kind is in
    ``CELL_STATIC_INTEGRATORS``, a readout in ``CELL_STATIC_READOUTS``, and no states asked for
    (``checkpoint_every`` not given)."""
    from ..integrators import update_kind
    from .cell_kernels import fused_projection
    return (not sequence and not explicit_interval and T <= config.CELL_STATIC_MAX_T
            and update_kind(spec.integrator) in config.CELL_STATIC_INTEGRATORS
            and spec.readout in config.CELL_STATIC_READOUTS
            and fused_projection(spec.in_features))
