"""The backend registry: named implementations of the functional contract ``forward``/``backward``.

A backend is any object with ``forward(spec, params, x, V0=None, *, checkpoint_every=None,
on_nonfinite="raise") -> (y, tape)`` and ``backward(spec, params, tape, dy) -> grads`` whose tapes carry
``tape.backend == name``. The NumPy reference is always registered; compiled backends register through
:func:`register` with a probe that says whether they work on this machine.
"""
import logging

logger = logging.getLogger(__name__)

_REGISTRY = {}
AUTO_PREFERENCE = ("cuda", "numba", "numpy")


def register(name, loader, probe=None, auto_probe=None, integrators=None):
    """Register backend ``name``.

    Parameters
    ----------
    name : str
    loader : callable
        Returns the backend object (imported lazily, on first use).
    probe : callable, optional
        Returns None when the backend works here, else a string saying why not.
    auto_probe : callable, optional
        Like ``probe``, for ``backend="auto"``, which may decline what an explicit choice accepts (the CUDA
        simulator); defaults to ``probe``.
    integrators : tuple of str, optional
        The integrators the backend implements; None (the default) for every registered one.
    """
    _REGISTRY[name] = {"loader": loader, "probe": probe or (lambda: None), "auto_probe": auto_probe,
                       "integrators": integrators, "module": None}


def implemented_integrators(name):
    """The integrators backend ``name`` implements, in the order of :data:`kinn_ref.spec.INTEGRATORS`."""
    from ..spec import INTEGRATORS
    implemented = _REGISTRY[name]["integrators"]
    return tuple(i for i in INTEGRATORS if implemented is None or i in implemented)


def spec_reason(name, spec):
    """None when backend ``name`` implements what ``spec`` asks for (None: any spec), else why not."""
    implemented = _REGISTRY[name]["integrators"]
    if spec is None or implemented is None or spec.integrator in implemented:
        return None
    complete = [n for n, entry in _REGISTRY.items() if entry["integrators"] is None]
    return (f"it does not implement integrator={spec.integrator!r} (it implements "
            f"{', '.join(map(repr, implemented))}; the {' and '.join(complete)} backends implement every "
            "integrator)")


def registered_backends():
    """Names of all registered backends."""
    return tuple(_REGISTRY)


def unavailable_reason(name, auto=False):
    """None if backend ``name`` works here (and, with ``auto``, may be picked by ``"auto"``), else why not."""
    entry = _REGISTRY[name]
    probe = entry["auto_probe"] if auto and entry["auto_probe"] is not None else entry["probe"]
    try:
        return probe()
    except Exception as exc:  # a failing probe means the backend is unusable; say why
        return f"{type(exc).__name__}: {exc}"


def available_backends():
    """Names of the registered backends that work on this machine."""
    return tuple(n for n in _REGISTRY if unavailable_reason(n) is None)


def resolve(name, spec=None):
    """Resolve a backend name (``"auto"`` picks the first working one of :data:`AUTO_PREFERENCE`).

    With a ``spec`` (a :class:`~kinn_ref.spec.LayerSpec`), ``"auto"`` passes over the backends that do not
    implement it and an explicit name that does not raises :class:`~kinn_ref.errors.BackendUnsupportedError`
    (a ValueError) saying so.
    """
    if name == "auto":
        for candidate in AUTO_PREFERENCE:
            if candidate in _REGISTRY:
                reason = unavailable_reason(candidate, auto=True) or spec_reason(candidate, spec)
                if reason is None:
                    return candidate
                logger.info("backend 'auto': %s not used (%s)", candidate, reason)
        return "numpy"
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"backend must be one of {sorted(_REGISTRY) + ['auto']}, got {name!r}")
    reason = unavailable_reason(name)
    if reason is not None:
        raise ValueError(f"backend {name!r} is not usable here: {reason}")
    check_implements(name, spec)
    return name


def check_implements(name, spec):
    """Raise :class:`~kinn_ref.errors.BackendUnsupportedError` when backend ``name`` does not implement
    ``spec``."""
    reason = spec_reason(name, spec)
    if reason is not None:
        from ..errors import BackendUnsupportedError
        raise BackendUnsupportedError(f"backend {name!r} cannot run this layer: {reason}", name)


def get_backend(name, spec=None):
    """The backend object for ``name``, resolved by :func:`resolve` (with ``spec``, as it says)."""
    name = resolve(name, spec)
    entry = _REGISTRY[name]
    if entry["module"] is None:
        entry["module"] = entry["loader"]()
    return entry["module"]


def _load_numpy():
    from .. import reference
    return reference


register("numpy", _load_numpy)


def _load_numba():
    from .numba_backend import load
    return load()


def _probe_numba():
    from .numba_backend import probe
    return probe()


register("numba", _load_numba, _probe_numba)


def _load_cuda():
    from .cuda_backend import load
    return load()


def _probe_cuda():
    from .cuda_backend import probe
    return probe()


def _auto_probe_cuda():
    from .cuda_backend import auto_reason
    return auto_reason()


register("cuda", _load_cuda, _probe_cuda, _auto_probe_cuda)
