"""The ``cuda`` backend: numba.cuda kernels with device-resident training (see :mod:`.backend`).

Importing this package imports numba.cuda; :func:`probe` says whether it works here.
"""
from .runtime.compat import auto_reason, probe


def load():
    """The backend module (``forward``/``backward`` and the device API)."""
    from . import backend
    return backend


__all__ = ["probe", "auto_reason", "load"]
