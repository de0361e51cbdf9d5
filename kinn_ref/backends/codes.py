"""Integer codes of the spec's options, shared by the compiled backends (numba and cuda).

Derived from the registries of :mod:`kinn_ref.spec` (a code is the option's position there), so that an
option added to a registry gets its code here and nowhere else. Kernels branch on these at run time or are
specialised on them when built.
"""
from ..spec import BOUNDARIES, COUPLINGS, INTEGRATORS, READOUTS


def _codes(names):
    return {name: code for code, name in enumerate(names)}


COUPLING_CODES = _codes(COUPLINGS)
INTEGRATOR_CODES = _codes(INTEGRATORS)
READOUT_CODES = _codes(READOUTS)
BOUNDARY_CODES = _codes(BOUNDARIES)
