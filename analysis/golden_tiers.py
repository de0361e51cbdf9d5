"""The graded tiers of the golden suite beyond ``basic`` (docs/golden.md, "Tiers").

- ``stiff``: the conductance-over-capacitance ratio ``g/C`` spreads over at least six decades across the
  layer's nodes (:func:`conductance_spread`), and ``dt`` sits just inside the explicit stability limit of the
  layer (euler, expeuler, rk4; :func:`stability_limit`, from :mod:`analysis.stability`), or far beyond it for
  the A-stable implicit step. Each case's description states its margin; a test recomputes it.
- ``long``: hundreds of steps in float64.
- ``edge``: the limits of the formulation: ``g = 0`` exactly, ``a`` near 0 in ``phi1`` (1e-9 and 1e-5,
  where a naive ``(1 - exp(-a))/a`` loses 7 and 11 digits; also a negative ``a``), ``beta = 0``, a cascade of
  four cells, grids of two points (a periodic point's neighbours on both sides are the same point) and of one
  point (with each boundary, and as one axis of a 2-D grid) and an all-zero leak.
- ``float32``: long float32 runs; their tolerance follows the case's condition
  (:mod:`analysis.golden_tolerance`).

The ``dt`` of every ``stiff`` case is a literal: the catalogue is data, computed by nothing that could differ
between machines; ``tests/test_golden.py`` checks each against the stability analysis.
"""
import numpy as np

from kinn_ref.parameterization import make_circuit
from kinn_ref.spec import LayerSpec

from .golden_cases import COUPLINGS, GoldenCase

# (C, g) per node: g/C = 0.01, 2 and 1e4 (a spread of 1e6)
_STIFF_RAW = {"C_raw": [1.0, 0.5, 1e-3], "g_raw": [0.01, 1.0, 10.0]}
# positive parameterization: C = c_min + softplus(C_raw) ~ 4.02, 0.69, 1.3e-3 and g = softplus(g_raw)
# ~ 2.5e-3, 0.69, 9.0: g/C ~ 6.2e-4 ... 6.7e3 (a spread of 1.1e7)
_STIFF_POSITIVE = {"C_raw": [4.0, 0.0, -8.0], "g_raw": [-6.0, 0.0, 9.0]}
# lightly damped dense couplings (a rotation plus a small decay) for long runs
_OSCILLATOR_G2 = [[-0.05, 1.0], [-1.0, -0.05]]
_OSCILLATOR_G3 = [[-0.02, 0.8, 0.0], [-0.8, -0.02, 0.3], [0.0, -0.3, -0.03]]


def _options(coupling):
    options, nodes = COUPLINGS[coupling]
    return dict(options), nodes


def _layer(coupling, nodes=None, in_features=2, **spec):
    options, default_nodes = _options(coupling)
    options.update(spec)
    return LayerSpec(in_features, default_nodes if nodes is None else nodes, **options)


def _stiff_cases():
    T = "stiff"
    return [
        GoldenCase("stiff-none-euler-last-raw-K1", _layer("none", integrator="euler", dt=1.9e-4, n_steps=40,
                                                          param="raw"),
                   tier=T, overrides=dict(_STIFF_RAW),
                   description="g/C = 0.01, 2, 1e4 (spread 1e6); euler at dt = 0.95 of its limit 2C/g = 2e-4"),
        GoldenCase("stiff-none-rk4-cells-raw-K3", _layer("none", nodes=2, integrator="rk4", dt=2.67e-4, n_steps=30,
                                                         order=3, readout="cells", param="raw"),
                   tier=T, with_V0=True,
                   overrides={"C_raw": [[1.0, 2.0], [1.0, 0.5], [1e-3, 1.0]],
                              "g_raw": [[0.01, 0.02], [0.1, 0.05], [10.0, 0.3]]},
                   description="cascade of three cells, g/C from 0.01 to 1e4 across the cells; rk4 at dt = 0.96 "
                               "of its limit 2.7853 C/g"),
        GoldenCase("stiff-kirchhoff-rk4-derivatives-positive-K2", _layer("kirchhoff", integrator="rk4",
                                                                         dt=3.665e-4, n_steps=30, order=2,
                                                                         readout="derivatives"),
                   tier=T, overrides=dict(_STIFF_POSITIVE),
                   description="positive parameters, g/C ~ 6e-4 ... 7e3 (spread 1e7), Kirchhoff coupling; rk4 "
                               "at dt = 0.99 of the limit from the eigenvalues of J"),
        GoldenCase("stiff-dense-expeuler-cells-raw-K1", _layer("dense", dt=0.3355, n_steps=30, readout="cells",
                                                               param="raw"),
                   tier=T, sequence=True,
                   overrides=dict(_STIFF_RAW, G_raw=[[0.0, 0.6, -0.4], [-0.8, 0.0, 0.5], [30.0, -20.0, 0.0]]),
                   description="g/C = 0.01, 2, 1e4 (spread 1e6), exp(-a) = exp(-5000) at the stiff node; "
                               "dense off-diagonal coupling, explicit in expeuler: dt = 0.9 of its limit"),
        GoldenCase("stiff-grid1d-dirichlet-euler-last-positive-K1",
                   _layer("grid1d-dirichlet", integrator="euler", dt=2.297e-4, n_steps=40),
                   tier=T, overrides={"C_raw": [4.0, -8.0], "g_raw": [-6.0, 9.0]},
                   description="two channels with g/C ~ 6.2e-4 and 6.7e3 (spread 1.1e7) on a Dirichlet mesh; "
                               "euler at dt = 0.95 of the limit from the mesh's Fourier modes"),
        GoldenCase("stiff-kirchhoff-implicit-last-raw-K2", _layer("kirchhoff", integrator="implicit", dt=0.5,
                                                                  n_steps=20, order=2, param="raw"),
                   tier=T, overrides=dict(_STIFF_RAW),
                   description="g/C = 0.01, 2, 1e4 (spread 1e6); backward Euler (A-stable) at dt = 0.5, "
                               "2500 times explicit Euler's limit"),
    ]


def _long_cases():
    # every mode still alive at the end (t g/C <= ~3, or a lightly damped oscillation), so that every
    # expected array, the capacitance gradient included, depends on the parameters and is well conditioned
    T = "long"
    return [
        GoldenCase("long-none-expeuler-last-positive-K2-T500", _layer("none", nodes=2, dt=0.1, n_steps=500,
                                                                      order=2),
                   tier=T, overrides={"C_raw": [0.5, 1.0], "g_raw": [-4.0, -3.5]},
                   description="500 steps of a two-cell cascade, exponential Euler; g/C ~ 0.02 (t g/C ~ 1)"),
        GoldenCase("long-kirchhoff-rk4-cells-raw-K1-T300", _layer("kirchhoff", integrator="rk4", dt=0.2,
                                                                  n_steps=300, readout="cells", param="raw"),
                   tier=T, overrides={"C_raw": [1.0, 1.5, 0.8], "g_raw": [0.02, 0.03, 0.015]},
                   description="300 rk4 steps of a Kirchhoff mesh; g/C ~ 0.02 (t g/C ~ 1.2)"),
        GoldenCase("long-dense-euler-last-positive-K1-sequence-seq-T200",
                   _layer("dense", nodes=2, in_features=1, integrator="euler", dt=0.1, n_steps=200,
                          return_sequences=True),
                   tier=T, batch=1, sequence=True, with_V0=False,
                   description="a sequence of 200 steps, every step returned, explicit Euler"),
        GoldenCase("long-grid1d-periodic-implicit-last-positive-K1-T300",
                   _layer("grid1d-periodic", nodes=1, integrator="implicit", dt=0.25, n_steps=300),
                   tier=T, overrides={"C_raw": 0.5, "g_raw": -4.0},
                   description="300 backward-Euler steps of a periodic RC mesh; g/C ~ 0.019 (t g/C ~ 1.4)"),
        GoldenCase("long-dense-implicit-derivatives-raw-K2-T200",
                   _layer("dense", nodes=2, integrator="implicit", dt=0.1, n_steps=200, order=2,
                          readout="derivatives", param="raw"),
                   tier=T, overrides={"C_raw": [1.0, 1.2], "g_raw": [0.05, 0.08], "G_raw": _OSCILLATOR_G2},
                   description="200 backward-Euler steps of a lightly damped dense oscillator in each of two "
                               "cells, derivatives readout"),
    ]


def _edge_cases():
    T = "edge"
    raw = dict(param="raw")
    return [
        GoldenCase("edge-g0-none-euler-last-raw-K1", _layer("none", integrator="euler", dt=0.2, n_steps=5, **raw),
                   tier=T, overrides={"g_raw": 0.0},
                   description="g = 0 exactly: a pure integrator, v <- v + dt (I - leak)/C"),
        GoldenCase("edge-g0-dense-expeuler-cells-raw-K1", _layer("dense", dt=0.25, n_steps=4, readout="cells", **raw),
                   tier=T, overrides={"g_raw": 0.0},
                   description="g = 0 exactly with dense coupling: a = -dt G_ii/C, of either sign"),
        GoldenCase("edge-g0-kirchhoff-rk4-derivatives-raw-K2", _layer("kirchhoff", integrator="rk4", dt=0.2,
                                                                      n_steps=4, order=2, readout="derivatives",
                                                                      **raw),
                   tier=T, overrides={"g_raw": 0.0},
                   description="g = 0 exactly, Kirchhoff coupling: charge is conserved, J is singular"),
        GoldenCase("edge-g0-grid1d-neumann-implicit-cells-raw-K1",
                   _layer("grid1d-neumann", integrator="implicit", dt=0.5, n_steps=4, readout="cells", **raw),
                   tier=T, overrides={"g_raw": 0.0},
                   description="g = 0 exactly on a no-flux mesh: the mean potential only integrates the input"),
        GoldenCase("edge-phi1-a1e-9-none-expeuler-last-raw-K1",
                   _layer("none", dt=0.125, n_steps=4, **raw), tier=T,
                   overrides={"C_raw": [1.0, 0.5, 2.0], "g_raw": [8e-9, 4e-9, 1.6e-8]},
                   description="a = dt g/C = 1e-9 at every node: a naive (1 - exp(-a))/a loses 7 digits"),
        GoldenCase("edge-phi1-a1e-5-none-expeuler-derivatives-raw-K2",
                   _layer("none", dt=0.125, n_steps=4, order=2, readout="derivatives", **raw), tier=T,
                   overrides={"C_raw": [1.0, 0.5, 2.0], "g_raw": [8e-5, 4e-5, 1.6e-4]},
                   description="a = dt g/C = 1e-5 at every node of both cells: a naive phi1 loses 11 digits"),
        GoldenCase("edge-phi1-negative-a-dense-expeuler-last-raw-K1",
                   _layer("dense", dt=0.125, n_steps=4, **raw), tier=T,
                   overrides={"C_raw": [1.0, 0.5, 2.0], "g_raw": 0.0,
                              "G_raw": [[8e-9, 0.3, -0.2], [0.1, -4e-5, 0.25], [-0.3, 0.2, 1.6e-5]]},
                   description="g = 0, a = -dt G_ii/C = -1e-9, 1e-5 and -1e-6: phi1 at tiny a of both signs"),
        GoldenCase("edge-beta0-none-euler-cells-positive-K3", _layer("none", integrator="euler", dt=0.2,
                                                                     n_steps=5, order=3, readout="cells"),
                   tier=T, overrides={"beta": 0.0},
                   description="beta = 0: the second and third cells get no drive (their V0 decays)"),
        GoldenCase("edge-beta0-kirchhoff-implicit-derivatives-raw-K2",
                   _layer("kirchhoff", integrator="implicit", dt=0.2, n_steps=4, order=2, readout="derivatives",
                          **raw), tier=T, overrides={"beta": 0.0},
                   description="beta = 0 in a two-cell cascade, derivatives readout"),
        GoldenCase("edge-K4-kirchhoff-rk4-derivatives-positive", _layer("kirchhoff", nodes=2, integrator="rk4",
                                                                        dt=0.2, n_steps=4, order=4,
                                                                        readout="derivatives"),
                   tier=T, description="a cascade of four cells, derivatives up to order 4"),
        GoldenCase("edge-K4-grid1d-dirichlet-expeuler-cells-raw",
                   _layer("grid1d-dirichlet", nodes=1, dt=0.2, n_steps=3, order=4, readout="cells", **raw),
                   tier=T, sequence=True, description="a cascade of four cells on an RC mesh, every cell read out"),
        GoldenCase("edge-grid1d-periodic-2points-euler-last-positive-K1",
                   _layer("grid1d-periodic", integrator="euler", dt=0.1, n_steps=4, grid_shape=(2,)),
                   tier=T, description="a periodic grid of two points (the smallest grid): both neighbours of a "
                                       "point are the other point, so each pair is joined twice"),
        GoldenCase("edge-grid1d-1point-neumann-implicit-cells-positive-K2",
                   _layer("grid1d-neumann", integrator="implicit", dt=0.25, n_steps=3, order=2, readout="cells",
                          grid_shape=(1,)),
                   tier=T, description="a grid of one point with no-flux ends: no edge at all, so the mesh "
                                       "carries no current (L0 = 0, not the -1 of a two-ended chain's end)"),
        GoldenCase("edge-grid1d-1point-periodic-expeuler-derivatives-raw-K1",
                   _layer("grid1d-periodic", dt=0.2, n_steps=3, readout="derivatives", grid_shape=(1,), **raw),
                   tier=T, sequence=True,
                   description="a periodic grid of one point: both wrap-around edges are self loops, which "
                               "carry no current and add nothing to the diagonal (L0 = 0)"),
        GoldenCase("edge-grid1d-1point-dirichlet-rk4-last-positive-K1",
                   _layer("grid1d-dirichlet", integrator="rk4", dt=0.2, n_steps=4, grid_shape=(1,)),
                   tier=T, description="a Dirichlet grid of one point: grounded through both ghost edges "
                                       "(L0 = [-2])"),
        GoldenCase("edge-grid2d-dirichlet-1x4-implicit-last-raw-K2",
                   _layer("grid2d-dirichlet", integrator="implicit", dt=0.25, n_steps=3, order=2,
                          grid_shape=(1, 4), **raw),
                   tier=T, description="a 1 x 4 Dirichlet grid: the one-point first axis still grounds every "
                                       "point twice, so it is not the 1-D grid of four points"),
        GoldenCase("edge-grid2d-periodic-3x1-euler-cells-positive-K2",
                   _layer("grid2d-periodic", nodes=2, integrator="euler", dt=0.1, n_steps=4, order=2,
                          readout="cells", grid_shape=(3, 1)),
                   tier=T, sequence=True, description="a 3 x 1 periodic grid: the one-point second axis adds "
                                                      "only self loops"),
        GoldenCase("edge-grid2d-dirichlet-2x2-implicit-cells-raw-K2",
                   _layer("grid2d-dirichlet", integrator="implicit", dt=0.25, n_steps=3, order=2,
                          readout="cells", grid_shape=(2, 2), **raw),
                   tier=T, description="a 2 x 2 Dirichlet grid: every point is at two edges"),
        GoldenCase("edge-grid2d-periodic-2x2-expeuler-derivatives-positive-K1",
                   _layer("grid2d-periodic", nodes=2, dt=0.2, n_steps=3, readout="derivatives", grid_shape=(2, 2)),
                   tier=T, sequence=True, description="a 2 x 2 periodic grid: every neighbour pair joined twice"),
        GoldenCase("edge-zero-leak-dense-rk4-cells-positive-K2", _layer("dense", integrator="rk4", dt=0.2,
                                                                        n_steps=4, order=2, readout="cells"),
                   tier=T, overrides={"leak": 0.0}, description="an empty leak: leak = 0 in every cell"),
        GoldenCase("edge-zero-leak-g0-none-expeuler-last-raw-K1", _layer("none", dt=0.2, n_steps=3, **raw),
                   tier=T, overrides={"leak": 0.0, "g_raw": 0.0},
                   description="leak = 0 and g = 0: a = 0 exactly and the state integrates the input alone"),
    ]


def _float32_cases():
    # as the long tier: every mode alive at the end, so that the condition (and the tolerance) stays moderate
    T = "float32"
    return [
        GoldenCase("float32-long-none-euler-last-positive-K1-T500",
                   _layer("none", integrator="euler", dt=0.125, n_steps=500), tier=T, dtype="float32",
                   overrides={"C_raw": [0.5, 0.0, 1.0], "g_raw": [-4.5, -4.0, -3.5]},
                   description="500 float32 euler steps; g/C ~ 0.011 ... 0.026"),
        GoldenCase("float32-long-kirchhoff-expeuler-cells-positive-K2-T300",
                   _layer("kirchhoff", dt=0.125, n_steps=300, order=2, readout="cells"), tier=T, dtype="float32",
                   overrides={"C_raw": [0.5, 0.0, 1.0], "g_raw": [-3.5, -3.0, -3.5]},
                   description="300 float32 steps of a Kirchhoff two-cell cascade, exponential Euler"),
        GoldenCase("float32-long-dense-rk4-derivatives-raw-K1-T200",
                   _layer("dense", integrator="rk4", dt=0.25, n_steps=200, readout="derivatives", param="raw"),
                   tier=T, dtype="float32",
                   overrides={"C_raw": [1.0, 1.0, 1.2], "g_raw": [0.01, 0.01, 0.02], "G_raw": _OSCILLATOR_G3},
                   description="200 float32 rk4 steps of a lightly damped dense oscillator, derivatives readout"),
        GoldenCase("float32-long-grid1d-neumann-implicit-last-positive-K1-T300",
                   _layer("grid1d-neumann", nodes=1, integrator="implicit", dt=0.25, n_steps=300),
                   tier=T, dtype="float32", overrides={"C_raw": 0.5, "g_raw": -4.5},
                   description="300 float32 backward-Euler steps on a no-flux mesh; g/C ~ 0.011"),
        GoldenCase("float32-long-seed-KINNLayers-T200",
                   LayerSpec(3, 3, order=1, coupling="dense", integrator="euler", dt=0.04, n_steps=200,
                             readout="last", param="raw"),
                   tier=T, dtype="float32", with_V0=False, layer="KINNLayers", overrides={"G_raw": _OSCILLATOR_G3},
                   description="the seed layer in float32 for 200 steps (a lightly damped G; dt = 0.63 of euler's "
                               "limit on it)"),
    ]


def tier_cases():
    """The cases of the ``stiff``, ``long``, ``edge`` and ``float32`` tiers, in that order."""
    return _stiff_cases() + _long_cases() + _edge_cases() + _float32_cases()


def circuit_ratios(case, params):
    """``g/C`` of every node of every cell of ``case`` (float64), from the raw parameters ``params``."""
    circuit = make_circuit(case.spec, {k: np.asarray(v, np.float64) for k, v in params.items()})
    return np.asarray(circuit.g / circuit.C)


def conductance_spread(case, params):
    """Largest over smallest positive ``g/C`` of the layer."""
    r = circuit_ratios(case, params)
    r = r[r > 0]
    return float(r.max() / r.min())


def stability_limit(case, params):
    """The largest stable ``dt`` of ``case``'s layer and integrator (:func:`analysis.stability.layer_dt_max`)."""
    from .stability import layer_dt_max
    return layer_dt_max(case.spec, {k: np.asarray(v, np.float64) for k, v in params.items()})
