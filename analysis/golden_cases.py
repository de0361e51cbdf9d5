"""The catalogue of golden cases and the deterministic generation of their inputs (docs/golden.md).

The cases cover every coupling (grids in 1-D and 2-D with each boundary), integrator, readout and
parameterization, static and sequence input, ``return_sequences``, cascades of 1 to 3 cells, with and without
an initial state, the seed-compatible layer ``KINNLayers``, and float32 computations. Options are assigned
to the (coupling, integrator) grid in a Latin-square pattern so that every coupling and every integrator
meets every readout, parameterization, input kind and order.

The graded tiers beyond these ``basic`` cases (``stiff``, ``long``, ``edge``, ``float32``) are in
:mod:`analysis.golden_tiers`.

Inputs are drawn with Python's ``random.Random(seed).uniform`` (a stream fixed across Python and NumPy
versions), so regeneration reproduces the stored files byte for byte. The seed is a function of the case's
name alone (:func:`case_seed`): adding, removing or reordering cases changes no other case's file.
"""
import hashlib
import random
from dataclasses import dataclass, field

import numpy as np

from kinn_ref.spec import INTEGRATORS, LayerSpec, PARAMETERIZATIONS, READOUTS

SCHEMA_VERSION = 1
# the suite's own version (calendar versioning, YEAR.MONTH.PATCH), apart from the package version;
# docs/golden_changelog.md says what changed in each
SUITE_VERSION = "2026.12.2"
TIERS = ("basic", "stiff", "long", "edge", "float32")

# name -> LayerSpec options and nodes per cell (channels per point for grids)
COUPLINGS = {
    "none": ({"coupling": "none"}, 3),
    "dense": ({"coupling": "dense"}, 3),
    "kirchhoff": ({"coupling": "kirchhoff"}, 3),
    "grid1d-periodic": ({"coupling": "grid", "grid_shape": (5,), "boundary": "periodic"}, 2),
    "grid1d-neumann": ({"coupling": "grid", "grid_shape": (4,), "boundary": "neumann"}, 2),
    "grid1d-dirichlet": ({"coupling": "grid", "grid_shape": (4,), "boundary": "dirichlet"}, 2),
    "grid2d-periodic": ({"coupling": "grid", "grid_shape": (3, 3), "boundary": "periodic"}, 1),
    "grid2d-neumann": ({"coupling": "grid", "grid_shape": (2, 3), "boundary": "neumann"}, 1),
    "grid2d-dirichlet": ({"coupling": "grid", "grid_shape": (3, 2), "boundary": "dirichlet"}, 1),
}
INPUT_KINDS = (("static", False), ("sequence", False), ("sequence", True), ("static", True))
# step sizes that differ from the pattern of _matrix_cases: with the name-based seed (suite 2026.12.0) the
# draws of this case put the pattern's dt = 0.25 beyond explicit Euler's stable limit (0.152)
DT_EXCEPTIONS = {"grid2d-dirichlet-euler-derivatives-positive-K3-static-V0": 0.1}


@dataclass(frozen=True)
class GoldenCase:
    """One golden case: a layer, the kind of its input and the seed of its inputs.

    Attributes
    ----------
    name : str
    spec : kinn_ref.LayerSpec
    dtype : {"float64", "float32"}
    batch : int
    sequence : bool
        Sequence input of ``spec.n_steps`` steps (otherwise static input held for ``spec.n_steps`` steps).
    with_V0 : bool
    layer : {"KINNLayer", "KINNLayers"}
        ``KINNLayers`` marks the seed-compatible layer (run through :class:`kinn_ref.KINNLayers`).
    description : str
    overrides : dict
        Parameter arrays fixed instead of drawn, name -> a value broadcast to the parameter's shape (a number,
        e.g. a zero leak conductance, or nested lists).
    tier : str
        One of :data:`TIERS`.

    The seed of the inputs is :attr:`seed`, a function of :attr:`name` alone.
    """

    name: str
    spec: LayerSpec
    dtype: str = "float64"
    batch: int = 2
    sequence: bool = False
    with_V0: bool = True
    layer: str = "KINNLayer"
    description: str = ""
    overrides: dict = field(default_factory=dict)
    tier: str = "basic"

    @property
    def seed(self):
        return case_seed(self.name)


def case_seed(name):
    """The seed of a case's inputs: the first 8 bytes of SHA-256 of its name, as a big-endian integer."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def spec_to_dict(spec):
    """``LayerSpec`` fields as a JSON-ready dict (``grid_shape`` a list or None)."""
    d = {f: getattr(spec, f) for f in spec.__dataclass_fields__}
    d["grid_shape"] = None if spec.grid_shape is None else list(spec.grid_shape)
    return d


def spec_from_dict(d):
    """Inverse of :func:`spec_to_dict`."""
    d = dict(d)
    if d.get("grid_shape") is not None:
        d["grid_shape"] = tuple(d["grid_shape"])
    return LayerSpec(**d)


def _matrix_cases():
    cases = []
    for i, (cname, (options, nodes)) in enumerate(COUPLINGS.items()):
        for j, integrator in enumerate(INTEGRATORS):
            readout = READOUTS[(i + j) % 3]
            param = PARAMETERIZATIONS[(i + j) % 2]
            order = 1 + (i + 2 * j) % 3
            kind, return_sequences = INPUT_KINDS[(i + 3 * j) % 4]
            with_V0 = (j + i // 2) % 2 == 0
            dt = (0.1, 0.2, 0.25)[(i + j) % 3]
            name = f"{cname}-{integrator}-{readout}-{param}-K{order}-{kind}" + \
                   ("-seq" if return_sequences else "") + ("-V0" if with_V0 else "")
            spec = LayerSpec(2, nodes, order=order, integrator=integrator, dt=DT_EXCEPTIONS.get(name, dt), n_steps=3,
                             readout=readout, param=param, return_sequences=return_sequences, **options)
            cases.append(GoldenCase(name, spec, sequence=kind == "sequence", with_V0=with_V0,
                                    description=f"{cname} coupling, {integrator}, readout {readout}, {param} "
                                                f"parameters, {order} cell(s), {kind} input"
                                                + (", every step returned" if return_sequences else "")
                                                + (", initial state given" if with_V0 else "")))
    return cases


def _extra_cases():
    seed_spec = LayerSpec(3, 3, order=1, coupling="dense", integrator="euler", dt=0.1, n_steps=5,
                          readout="last", param="raw")
    extra = [
        GoldenCase("seed-KINNLayers", seed_spec, with_V0=False, layer="KINNLayers",
                   description="the seed document's layer v <- v + dt (x + v G^T - leak)/C (kinn_ref.KINNLayers)"),
        GoldenCase("none-expeuler-zero-conductance", LayerSpec(2, 2, order=2, coupling="none", dt=0.2, n_steps=3,
                                                               readout="derivatives", param="raw"),
                   overrides={"g_raw": 0.0},
                   description="exponential Euler at a = 0 exactly (phi1(0) = 1): raw mode, zero conductance"),
        GoldenCase("kirchhoff-rk4-derivatives-K3", LayerSpec(2, 2, order=3, coupling="kirchhoff", integrator="rk4",
                                                             dt=0.2, n_steps=4, readout="derivatives"),
                   sequence=True, description="third-order cascade, derivatives up to order 3"),
    ]
    float32 = [
        ("dense", "euler", "cells"), ("kirchhoff", "expeuler", "derivatives"),
        ("grid2d-neumann", "implicit", "last"), ("none", "rk4", "derivatives"),
    ]
    for n, (cname, integrator, readout) in enumerate(float32):
        options, nodes = COUPLINGS[cname]
        spec = LayerSpec(2, nodes, order=2, integrator=integrator, dt=0.2, n_steps=3, readout=readout, **options)
        extra.append(GoldenCase(f"float32-{cname}-{integrator}-{readout}", spec, dtype="float32",
                                sequence=n % 2 == 1, with_V0=n % 2 == 0,
                                description=f"float32 computation: {cname}, {integrator}, readout {readout} "
                                            "(inputs rounded to float32, expected values exact for them)"))
    extra.append(GoldenCase("float32-seed-KINNLayers", seed_spec, dtype="float32", with_V0=False,
                            layer="KINNLayers", description="the seed layer in float32"))
    return extra


def golden_cases():
    """Every golden case: the ``basic`` tier, then the graded tiers of :mod:`analysis.golden_tiers`.

    Returns
    -------
    list of GoldenCase
    """
    from .golden_tiers import tier_cases
    cases = _matrix_cases() + _extra_cases() + tier_cases()
    assert len({c.name for c in cases}) == len(cases)
    assert all(c.tier in TIERS for c in cases)
    return cases


def _draw(rng, shape, lo, hi):
    return np.array([rng.uniform(lo, hi) for _ in range(int(np.prod(shape)))], dtype=np.float64).reshape(shape)


def case_inputs(case):
    """The inputs of ``case``: ``params``, ``x``, ``V0`` (or None) and the cotangent ``dy``.

    Values are drawn in ranges that keep every layer well inside its stable region (conductances and
    capacitances of order one, ``dt <= 0.25``); for ``KINNLayers`` the seed's fixed parts (``W = I``,
    ``b = 0``, ``g = 0``, ``beta = 1``) are kept. Arrays have the case's dtype.

    Returns
    -------
    params : dict of ndarray
    x : ndarray
    V0 : ndarray or None
    dy : ndarray
    """
    spec, rng = case.spec, random.Random(case.seed)
    shapes = spec.param_shapes()
    K, H, D = spec.order, spec.n_nodes, spec.in_features
    positive = spec.param == "positive"
    p = {"W": _draw(rng, shapes["W"], -0.8, 0.8), "b": _draw(rng, shapes["b"], -0.3, 0.3),
         "C_raw": _draw(rng, (K, H), -0.5, 1.0) if positive else _draw(rng, (K, H), 0.7, 1.7),
         "g_raw": _draw(rng, (K, H), -0.5, 1.0) if positive else _draw(rng, (K, H), 0.3, 1.3),
         "leak": _draw(rng, (K, H), -0.3, 0.3), "beta": _draw(rng, (K, H), 0.5, 1.5)}
    if spec.coupling == "dense":
        p["G_raw"] = _draw(rng, shapes["G_raw"], -0.6, 0.6) / np.sqrt(H)
    elif spec.coupling == "kirchhoff":
        p["G_raw"] = _draw(rng, shapes["G_raw"], -1.5, 0.5) if positive else _draw(rng, shapes["G_raw"], 0.05, 0.4)
    elif spec.coupling == "grid":
        p["G_raw"] = _draw(rng, shapes["G_raw"], -1.0, 0.5) if positive else _draw(rng, shapes["G_raw"], 0.2, 0.6)
    if case.layer == "KINNLayers":
        p.update(W=np.eye(H, D), b=np.zeros(H), g_raw=np.zeros((K, H)), beta=np.ones((K, H)))
        p["G_raw"] = _draw(rng, shapes["G_raw"], -1.0, 1.0)
    for name, value in case.overrides.items():
        p[name] = np.array(np.broadcast_to(np.asarray(value, dtype=np.float64), shapes[name]))
    x = _draw(rng, spec.input_shape(case.batch, spec.n_steps if case.sequence else None), -1.0, 1.0)
    V0 = _draw(rng, (case.batch, K, spec.total_nodes), -0.5, 0.5) if case.with_V0 else None
    width = spec.readout_width
    y_shape = (case.batch, spec.n_steps, width) if spec.return_sequences else (case.batch, width)
    dy = _draw(rng, y_shape, -1.0, 1.0)
    dtype = np.dtype(case.dtype)
    p, x, dy = ({k: np.ascontiguousarray(v, dtype=dtype) for k, v in p.items()}, np.ascontiguousarray(x, dtype),
                np.ascontiguousarray(dy, dtype))
    return p, x, None if V0 is None else np.ascontiguousarray(V0, dtype), dy
