"""The adapter protocol of ``kinn-ref golden check`` (docs/golden.md, "Checking an outside implementation").

An adapter is a callable ``adapter(spec, params, x, V0, dy[, case]) -> (y, grads)``. It may declare, as
attributes:

- ``implements``: the gradients it returns, by their names in the suite (``W, b, C_raw, g_raw, leak, beta,
  G_raw, x, V0``), or a function of the case returning them; the checker compares those and reports the
  others as not compared. Without it every gradient of the case is required;
- ``map_params(params, case) -> dict``: its own parameters from the case's raw ones (the adapter is then
  called with these);
- ``map_grads(grads, params, case) -> dict``: the raw gradients from the ones it returned (``params`` are
  the raw parameters).

An adapter that takes a ``case`` argument is given the case's :class:`CaseInfo` (name, ``layer``, ``tier``,
dtype, spec, input kind). :func:`run_case` runs one case and turns whatever happens into an
:class:`Outcome`, so that one case's failure never ends a run.
"""
import importlib
import importlib.util
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The parameter names of the suite (docs/math.md, section 2) and every gradient a case may hold.
PARAMETER_NAMES = ("W", "b", "C_raw", "g_raw", "leak", "beta", "G_raw")
GRADIENT_NAMES = PARAMETER_NAMES + ("x", "V0")


class AdapterError(ValueError):
    """An adapter that cannot be used at all: it does not load, or what it declares is malformed."""


@dataclass(frozen=True)
class CaseInfo:
    """What an adapter is told about the case it runs (its ``case`` argument).

    Attributes
    ----------
    name : str
    layer : {"KINNLayer", "KINNLayers"}
        ``KINNLayers``: the case was made for the seed document's layer.
    tier : str
        The case's tier (``basic`` for a manifest without tiers).
    dtype : {"float64", "float32"}
    spec : dict
        The LayerSpec fields, as passed to the adapter.
    input : {"static", "sequence"}
    has_V0 : bool
    batch : int
    description : str
    """

    name: str
    layer: str
    tier: str
    dtype: str
    spec: dict
    input: str
    has_V0: bool
    batch: int
    description: str

    @classmethod
    def from_entry(cls, entry, spec):
        return cls(name=entry["name"], layer=entry["layer"], tier=entry.get("tier", "basic"), dtype=entry["dtype"],
                   spec=dict(spec), input=entry["input"], has_V0=entry["has_V0"], batch=entry["batch"],
                   description=entry.get("description", ""))


@dataclass(frozen=True)
class Declaration:
    """What an adapter declares (see the module docstring); None where it declares nothing."""

    implements: object = None
    map_params: object = None
    map_grads: object = None
    takes_case: bool = False


@dataclass
class Outcome:
    """What running one case gave, before any comparison.

    Attributes
    ----------
    kind : {"result", "unsupported", "error"}
    y : ndarray or BadArray, optional
    grads : dict or None
        None: the adapter returned no gradients (a forward-only check).
    implements : tuple of str or None
        The gradients it declared for this case; None: all.
    detail : str
    """

    kind: str
    y: object = None
    grads: object = None
    implements: object = None
    detail: str = ""


@dataclass(frozen=True)
class BadArray:
    """An entry of a result that could not be read as a numeric array (the comparison reports it)."""

    message: str


class MalformedResult(Exception):
    """The adapter's result is not ``(y, grads)`` of the documented form."""


def load_adapter(target):
    """The adapter named by ``module:function`` or ``path/to/file.py:function`` (a class is instantiated).

    Raises
    ------
    AdapterError
        When the target is malformed, its module cannot be imported (whatever it raised, ``sys.exit``
        included) or has no such callable.
    """
    if not isinstance(target, str) or ":" not in target:
        raise AdapterError(f"impl must be 'module:function' or 'path/to/file.py:function', got {target!r}")
    module_name, _, name = target.rpartition(":")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise AdapterError(f"impl file {path} does not exist")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except AdapterError:
        raise
    except ImportError as exc:
        raise AdapterError(f"impl module {module_name!r} cannot be imported: {exc}") from exc
    except (Exception, SystemExit) as exc:
        raise AdapterError(f"impl module {module_name!r} failed while being imported: {describe(exc)}") from exc
    obj = getattr(module, name, None)
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise AdapterError(f"impl {target!r}: {name}() failed: {describe(exc)}") from exc
    if not callable(obj):
        raise AdapterError(f"impl {target!r}: {module_name} has no function {name!r}")
    return obj


def declaration(adapter):
    """The :class:`Declaration` of ``adapter``, checked.

    Raises
    ------
    AdapterError
        For a declaration of the wrong kind or naming gradients the suite does not have.
    """
    implements = getattr(adapter, "implements", None)
    if implements is not None and not callable(implements):
        implements = check_implements(implements)
    hooks = {}
    for hook in ("map_params", "map_grads"):
        fn = getattr(adapter, hook, None)
        if fn is not None and not callable(fn):
            raise AdapterError(f"the adapter's {hook} must be a function, got {type(fn).__name__}")
        hooks[hook] = fn
    try:
        parameters = inspect.signature(adapter).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_case = "case" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return Declaration(implements=implements, takes_case=takes_case, **hooks)


def check_implements(names):
    """``names`` as a tuple of known gradient names; an AdapterError otherwise."""
    if isinstance(names, str) or not all(isinstance(n, str) for n in _iterable(names)):
        raise AdapterError(f"the adapter's implements must be a list of gradient names, got {names!r}")
    unknown = sorted(set(names) - set(GRADIENT_NAMES))
    if unknown:
        raise AdapterError(f"the adapter's implements names gradients the suite does not have: {unknown} "
                           f"(known: {', '.join(GRADIENT_NAMES)})")
    return tuple(names)


def _iterable(names):
    try:
        return list(names)
    except TypeError:
        raise AdapterError(f"the adapter's implements must be a list of gradient names, got {names!r}") from None


def run_case(adapter, decl, inputs, info):
    """Run one case through ``adapter`` (declaration ``decl``) and return an :class:`Outcome`.

    ``inputs`` holds ``spec`` (dict), ``params``, ``x``, ``V0`` and ``dy``, the adapter's own copies. Whatever
    the adapter raises (``sys.exit`` included) becomes the case's outcome; only KeyboardInterrupt passes.
    """
    try:
        implements = decl.implements
        if callable(implements):
            implements = check_implements(implements(info))
        params = inputs["params"]
        own = params
        if decl.map_params is not None:
            own = decl.map_params({k: v.copy() for k, v in params.items()}, info)
            if not isinstance(own, Mapping):
                raise MalformedResult(f"map_params must return a dict, got {type(own).__name__}")
        args = (inputs["spec"], own, inputs["x"], inputs["V0"], inputs["dy"])
        result = adapter(*args, case=info) if decl.takes_case else adapter(*args)
        y, grads = normalize_result(result)
        if grads is not None and decl.map_grads is not None:
            grads = decl.map_grads(grads, params, info)
            if not isinstance(grads, Mapping):
                raise MalformedResult(f"map_grads must return a dict, got {type(grads).__name__}")
            grads = _gradient_arrays(grads)
        return Outcome("result", y=y, grads=grads, implements=implements)
    except NotImplementedError as exc:
        return Outcome("unsupported", detail=str(exc) or "NotImplementedError")
    except MalformedResult as exc:
        return Outcome("error", detail=f"malformed result: {exc}")
    except AdapterError as exc:
        return Outcome("error", detail=str(exc))
    except (Exception, SystemExit) as exc:
        return Outcome("error", detail=describe(exc))


def normalize_result(result):
    """``(y, grads)`` with NumPy arrays (or :class:`BadArray` entries) from what an adapter returned.

    Raises
    ------
    MalformedResult
        When the result is not a pair, ``y`` is missing, or ``grads`` is neither None nor a dict.
    """
    if not isinstance(result, (tuple, list)):
        raise MalformedResult(f"the adapter must return (y, grads), got {type(result).__name__}")
    if len(result) != 2:
        raise MalformedResult(f"the adapter must return (y, grads), got a {type(result).__name__} of "
                              f"{len(result)} items")
    y, grads = result
    if y is None:
        raise MalformedResult("y is None")
    if grads is not None and not isinstance(grads, Mapping):
        raise MalformedResult(f"grads must be a dict of arrays or None, got {type(grads).__name__}")
    return as_array("y", y), None if grads is None else _gradient_arrays(grads)


def _gradient_arrays(grads):
    bad_keys = [k for k in grads if not isinstance(k, str)]
    if bad_keys:
        raise MalformedResult(f"gradient keys must be names (str), got {bad_keys[:3]!r}")
    return {k: as_array(f"grad.{k}", v) for k, v in grads.items()}


def as_array(name, value):
    """``numpy.asarray(value)``, or a :class:`BadArray` saying why it is not a numeric array."""
    try:
        array = np.asarray(value)
    except Exception as exc:
        return BadArray(f"cannot be read as an array ({describe(exc)})")
    if array.dtype.kind not in "biufc":
        return BadArray(f"not a numeric array (dtype {array.dtype}, from {type(value).__name__})")
    return array


def describe(exc):
    """One line for an exception an adapter raised, with the place it was raised."""
    if isinstance(exc, SystemExit):
        return f"the adapter called sys.exit({exc.code!r})"
    text = " ".join(str(exc).split())
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" (at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno})" if tb is not None else ""
    return f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
