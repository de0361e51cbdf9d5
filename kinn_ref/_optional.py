"""Optional dependencies: which extra of ``kinn-ref`` installs what, and one clear error when it is missing.

The core install (``pip install kinn-ref``) gives every feature of numpy, numba, scipy, sympy, mpmath,
matplotlib and tqdm. The extras add only what a user may not want: ``cuda`` (numba-cuda), ``digits``
(scikit-learn), ``mnist1d`` (the MNIST-1D generator), ``bench`` (torch), ``fno`` (torch and neuraloperator, for
docs/examples/burgers_fno.py), ``dask`` (dask.distributed), ``mpi`` (mpi4py and an MPI).
"""
import importlib
import importlib.util

# importable module -> (extra that installs it, what the extra is for)
EXTRAS = {
    "sklearn": ("digits", "the 8x8 digits data set"),
    "mnist1d": ("mnist1d", "the MNIST-1D data set"),
    "torch": ("bench", "the PyTorch comparison"),
    "neuralop": ("fno", "the Fourier-neural-operator peer on Burgers"),
    "numba.cuda": ("cuda", "the cuda backend"),
    "distributed": ("dask", "sweeps on Dask"),
    "mpi4py": ("mpi", "data-parallel training with MPI"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def install_hint(module):
    """``pip install 'kinn-ref[EXTRA]'`` for the extra that provides ``module``."""
    extra, _ = EXTRAS[module]
    return f"python -m pip install 'kinn-ref[{extra}]'"


def available(module):
    """True when the optional ``module`` can be imported (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module, feature=None):
    """Import and return the optional ``module``, or raise :class:`MissingExtraError` naming its extra.

    Parameters
    ----------
    module : str
        A key of :data:`EXTRAS`.
    feature : str, optional
        What needs it, for the message (default: what the extra is for).
    """
    if module not in EXTRAS:
        raise ValueError(f"module must be one of {sorted(EXTRAS)}, got {module!r}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra, purpose = EXTRAS[module]
        raise MissingExtraError(f"{feature or purpose} needs {module.split('.')[0]}, which is not installed "
                                f"({exc}); install it with: {install_hint(module)}") from None
