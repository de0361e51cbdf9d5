"""The on-disk cache of the ``cuda`` kernels: a process compiles each kernel once, later processes load it.

Every kernel the backend builds (:func:`.runtime.device.kernel_cache`) gets numba-cuda's per-function cache
(``cache=True``), with a locator of its own so that

- the files go to one folder per installed version of the backend (:func:`cache_dir`): a folder named by a
  hash of the package's source files and the numba-cuda version, so that an edit to any kernel or to a
  function it calls, or an upgrade, starts a new folder instead of loading stale code;
- kernels built under other tunables (:mod:`.runtime.config`, which the builders' cache key includes) go to other
  files;
- kernels whose source is generated (:mod:`.families.cell_static`) can be cached too.

Where the files go: ``$KINN_REF_CUDA_CACHE_DIR`` if set, else ``$NUMBA_CACHE_DIR/kinn_ref-cuda`` if that is
set, else ``$XDG_CACHE_HOME/kinn_ref/cuda`` (``~/.cache/kinn_ref/cuda``). ``KINN_REF_CUDA_CACHE=0`` turns
the cache off; so does a folder that cannot be written (the kernels are then compiled in every process).
Deleting the folder is always safe. The CUDA simulator has no compiled code and caches nothing.
"""
import contextlib
import hashlib
import os
import pathlib

from .compat import simulator_active

ENV_DIR = "KINN_REF_CUDA_CACHE_DIR"
ENV_SWITCH = "KINN_REF_CUDA_CACHE"

_PACKAGE = pathlib.Path(__file__).resolve().parents[3]       # kinn_ref/
_TAG = None
_SCOPE = [""]                                               # disambiguator of the kernels being built now
_WHY_OFF = None


def _version_tag():
    """A short hash of the package's Python sources and the numba-cuda version (computed once)."""
    global _TAG
    if _TAG is None:
        h = hashlib.sha256()
        for path in sorted(_PACKAGE.rglob("*.py")):
            h.update(str(path.relative_to(_PACKAGE)).encode())
            h.update(path.read_bytes())
        try:
            import numba_cuda
            h.update(numba_cuda.__version__.encode())
        except ImportError:
            h.update(b"numba.cuda")
        _TAG = h.hexdigest()[:16]
    return _TAG


def cache_root():
    """The folder that holds the cache of every installed version (see the module docstring)."""
    if os.environ.get(ENV_DIR):
        return pathlib.Path(os.environ[ENV_DIR]).expanduser()
    if os.environ.get("NUMBA_CACHE_DIR"):
        return pathlib.Path(os.environ["NUMBA_CACHE_DIR"]).expanduser() / "kinn_ref-cuda"
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "kinn_ref" / "cuda"


def cache_dir():
    """This version's cache folder."""
    return cache_root() / _version_tag()


def enabled():
    """Whether kernels are cached on disk here (not under the simulator, not with ``KINN_REF_CUDA_CACHE=0``)."""
    return _reason_off() is None


def location():
    """Where the kernels are cached, or why they are not (for messages)."""
    why = _reason_off()
    return str(cache_dir()) if why is None else f"not cached on disk ({why})"


def _reason_off():
    if _WHY_OFF is not None:
        return _WHY_OFF
    if simulator_active():
        return "the CUDA simulator compiles nothing"
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return f"{ENV_SWITCH}=0"
    if _cache_classes() is None:
        return "this numba-cuda has no kernel cache"
    return None


@contextlib.contextmanager
def building(key):
    """Within the block, kernels made cachable by :func:`enable` are told apart by ``key`` (a builder's
    arguments and tunables)."""
    _SCOPE.append(hashlib.sha256(repr(key).encode()).hexdigest()[:12])
    try:
        yield
    finally:
        _SCOPE.pop()


def enable(kernels):
    """Turn on the on-disk cache of every kernel in ``kernels`` (a dispatcher, or tuples, lists, dicts and
    namespaces of them, as the builders return); device functions and other values are left alone.
    Returns ``kernels``."""
    if enabled():
        _walk(kernels, 0)
    return kernels


def _walk(obj, depth):
    if depth > 3:
        return
    if _is_kernel(obj):
        _attach(obj)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _walk(item, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            _walk(item, depth + 1)
    elif type(obj).__name__ == "SimpleNamespace":
        for item in vars(obj).values():
            _walk(item, depth + 1)


def _is_kernel(obj):
    classes = _cache_classes()
    return (classes is not None and isinstance(obj, classes["dispatcher"])
            and not obj.targetoptions.get("device", False))


def _attach(dispatcher):
    global _WHY_OFF
    classes = _cache_classes()
    try:
        dispatcher._cache = classes["cache"](dispatcher.py_func)
    except OSError as exc:                      # the folder cannot be made or written: compile every time
        _WHY_OFF = f"{cache_dir()} is not writable: {exc}"


_CLASSES = []


def _cache_classes():
    """numba-cuda's cache classes with this module's locator, or None where numba-cuda lacks them."""
    if _CLASSES:
        return _CLASSES[0]
    try:
        from numba.cuda.core.caching import _CacheLocator
        from numba.cuda.dispatcher import CUDACache, CUDACacheImpl, CUDADispatcher
    except ImportError:
        _CLASSES.append(None)
        return None

    class Locator(_CacheLocator):
        """All of the backend's kernels in :func:`cache_dir`, stamped with the version tag."""

        def __init__(self, py_func, py_file):
            self._path = str(cache_dir())
            origin = hashlib.sha256(py_file.encode()).hexdigest()[:8]
            self._disambiguator = f"{py_func.__code__.co_firstlineno}-{origin}-{_SCOPE[-1]}"

        def ensure_cache_path(self):
            os.makedirs(self._path, exist_ok=True)
            probe = pathlib.Path(self._path) / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()

        def get_cache_path(self):
            return self._path

        def get_source_stamp(self):
            return _version_tag()

        def get_disambiguator(self):
            return self._disambiguator

        @classmethod
        def from_function(cls, py_func, py_file):
            self = cls(py_func, py_file)
            self.ensure_cache_path()
            return self

    class Impl(CUDACacheImpl):
        _locator_classes = [Locator]

    class Cache(CUDACache):
        _impl_class = Impl

    _CLASSES.append({"dispatcher": CUDADispatcher, "cache": Cache})
    return _CLASSES[0]
