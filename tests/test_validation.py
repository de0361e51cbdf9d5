"""Bad input at the public boundary: a ValueError naming the argument and what was expected."""
import numpy as np
import pytest

import kinn_ref as kr
from helpers import check_backward_refuses_mismatches, check_tape_owns_its_inputs, make_case
from kinn_ref.divergence import clear_cache
from kinn_ref.errors import UnstableStepWarning


@pytest.mark.parametrize("kwargs,match", [
    ({"dt": 0.0}, "dt must be a finite number > 0"),
    ({"dt": -1.0}, "dt must be"),
    ({"dt": float("nan")}, "dt must be"),
    ({"n_steps": 0}, "n_steps must be an integer >= 1"),
    ({"n_steps": 2.5}, "n_steps must be an integer"),
    ({"order": 0}, "order must be"),
    ({"coupling": "full"}, "coupling must be one of"),
    ({"integrator": "rk45"}, "integrator must be one of"),
    ({"readout": "all"}, "readout must be one of"),
    ({"param": "exp"}, "param must be one of"),
    ({"boundary": "open"}, "boundary must be one of"),
    ({"coupling": "grid"}, "grid_shape must be given"),
    ({"coupling": "grid", "grid_shape": (4, 4, 4)}, "grid_shape must have 1 or 2 axes"),
    ({"coupling": "grid", "grid_shape": (0,)}, "grid_shape must be an integer >= 1"),
    ({"coupling": "grid", "grid_shape": (4, 2.0)}, "grid_shape must be an integer >= 1"),
    ({"grid_shape": (4,)}, "grid_shape is only used with coupling='grid'"),
    ({"c_min": 0.0}, "c_min must be"),
    ({"return_sequences": 1}, "return_sequences must be a bool"),
])
def test_layer_spec_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kr.LayerSpec(2, 3, **kwargs)


def test_spec_rejects_bad_sizes():
    with pytest.raises(ValueError, match="in_features must be an integer >= 1"):
        kr.LayerSpec(0, 3)
    with pytest.raises(ValueError, match="n_nodes must be an integer >= 1"):
        kr.LayerSpec(2, True)


def _base():
    spec, params, x, V0 = make_case("dense", "expeuler", "last")
    return spec, params, x, V0


def test_wrong_x_shape_names_x_and_expected_shape():
    spec, params, x, _ = _base()
    with pytest.raises(ValueError, match=r"x must have shape \(\*, 3\), got \(3, 4\)"):
        kr.forward(spec, params, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="x must be a numpy.ndarray"):
        kr.forward(spec, params, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="x must be a numpy.ndarray of shape"):
        kr.forward(spec, params, np.zeros(3))


def test_wrong_dtypes_are_rejected_without_promotion():
    spec, params, x, _ = _base()
    with pytest.raises(ValueError, match="x must have dtype float64"):
        kr.forward(spec, params, x.astype(np.float32))
    with pytest.raises(ValueError, match="x must have dtype float64"):
        kr.forward(spec, params, x.astype(np.int64))
    mixed = dict(params, b=params["b"].astype(np.float32))
    with pytest.raises(ValueError, match=r"params\['b'\] must have dtype float64"):
        kr.forward(spec, mixed, x)
    ints = {k: v.astype(np.int32) for k, v in params.items()}
    with pytest.raises(ValueError, match=r"params\['W'\] must have dtype float64 or float32"):
        kr.forward(spec, ints, x)


def test_non_finite_inputs_and_parameters_are_rejected():
    spec, params, x, V0 = _base()
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x must be finite"):
        kr.forward(spec, params, bad)
    p = {k: v.copy() for k, v in params.items()}
    p["leak"][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"params\['leak'\] must be finite"):
        kr.forward(spec, p, x)
    V = V0.copy()
    V[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="V0 must be finite"):
        kr.forward(spec, params, x, V)


def test_wrong_parameter_keys_and_shapes():
    spec, params, x, V0 = _base()
    with pytest.raises(ValueError, match="params must have exactly the keys"):
        kr.forward(spec, {k: v for k, v in params.items() if k != "beta"}, x)
    with pytest.raises(ValueError, match=r"params\['G_raw'\] must have shape \(2, 3, 3\)"):
        kr.forward(spec, dict(params, G_raw=np.zeros((2, 3, 4))), x)
    with pytest.raises(ValueError, match=r"V0 must have shape \(3, 2, 3\)"):
        kr.forward(spec, params, x, V0[:, :1])
    with pytest.raises(ValueError, match="params must be a dict"):
        kr.forward(spec, [1, 2], x)


def test_zero_capacitance_in_raw_mode():
    spec, params, x, _ = make_case("none", param="raw")
    params["C_raw"][1, 2] = 0.0
    with pytest.raises(ValueError, match=r"params\['C_raw'\] must be > 0 in param='raw' mode.*\[1, 2\]"):
        kr.forward(spec, params, x)


def test_bad_forward_options():
    spec, params, x, _ = _base()
    with pytest.raises(ValueError, match="backend must be one of"):
        kr.forward(spec, params, x, backend="torch")
    with pytest.raises(ValueError, match="checkpoint_every must be an integer >= 1"):
        kr.forward(spec, params, x, checkpoint_every=0)
    with pytest.raises(ValueError, match="on_nonfinite must be one of"):
        kr.forward(spec, params, x, on_nonfinite="ignore")
    with pytest.raises(ValueError, match="dtype must be float64 or float32"):
        kr.init_params(spec, dtype=np.float16)


def test_bad_backward_arguments():
    spec, params, x, _ = _base()
    y, tape = kr.forward(spec, params, x)
    with pytest.raises(ValueError, match=r"dy must have shape \(3, 3\)"):
        kr.backward(spec, params, tape, np.ones((3, 4)))
    with pytest.raises(ValueError, match="dy must have dtype float64"):
        kr.backward(spec, params, tape, np.ones(y.shape, np.float32))
    with pytest.raises(ValueError, match="tape must be the tape returned by forward"):
        kr.backward(spec, params, object(), np.ones_like(y))


def _unstable():
    """A circuit that grows by itself (g < 0): the pre-check only warns, and the pass runs until it overflows."""
    spec = kr.LayerSpec(1, 2, order=2, integrator="euler", dt=2.0, n_steps=1000, param="raw")
    params = kr.init_params(spec)
    params["g_raw"][:] = -1.0
    return spec, params, np.ones((2, 1))


def test_non_finite_state_raises_with_step_and_cell():
    spec, params, x = _unstable()
    clear_cache()      # the warning is given once per layer and parameter values
    with pytest.raises(kr.NonFiniteStateError, match=r"non-finite at step \d+ in cell [01]") as info, \
            pytest.warns(UnstableStepWarning, match="grows by itself"):
        kr.forward(spec, params, x)
    assert not isinstance(info.value, kr.DivergentStepError)
    assert 400 < info.value.step < 1000 and info.value.cell in (0, 1)


@pytest.mark.filterwarnings("ignore::kinn_ref.errors.UnstableStepWarning")
def test_non_finite_state_flagged_on_request():
    spec, params, x = _unstable()
    y, tape = kr.forward(spec, params, x, on_nonfinite="flag")
    assert tape.nonfinite is not None and not np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="non-finite forward pass"):
        kr.backward(spec, params, tape, np.ones_like(y))


def test_sequence_length_sets_the_step_count():
    spec, params, x, _ = make_case("none", sequence=True, n_steps=6)
    y, tape = kr.forward(spec.replace(n_steps=2), params, x)
    assert tape.n_steps == 6


@pytest.mark.parametrize("dt", [1e-320, 5e-324])
def test_subnormal_dt_is_refused_naming_dt(dt):
    with pytest.raises(ValueError, match="dt must be at least 2.2.*e-308.*got " + repr(dt)):
        kr.LayerSpec(2, 3, dt=dt)


def test_dt_below_the_float32_range_is_refused_for_float32_params():
    spec = kr.LayerSpec(2, 3, integrator="implicit", dt=1e-39)
    params = kr.init_params(spec, dtype=np.float32)
    with pytest.raises(ValueError, match="dt 1e-39 is too small for float32 params"):
        kr.forward(spec, params, np.ones((1, 2), np.float32))
    y, _ = kr.forward(spec, kr.init_params(spec), np.ones((1, 2)))     # float64 represents it
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("options,match", [
    ({"foo": 1}, r"unknown option 'foo'; the options are in_features, n_nodes, order, .*, boundary$"),
    ({"nsteps": 4}, r"unknown option 'nsteps' \('nsteps': did you mean 'n_steps'\?\)"),
    ({"foo": 1, "bar": 2}, "unknown options 'foo', 'bar'"),
])
def test_layer_spec_names_an_unknown_option_and_lists_the_valid_ones(options, match):
    with pytest.raises(TypeError, match=match):
        kr.LayerSpec(2, 3, **options)
    with pytest.raises(TypeError, match=match):
        kr.KINN(2, [3], 1, **options)
    with pytest.raises(TypeError, match=match):
        kr.LayerSpec(2, 3).replace(**options)


def test_layer_spec_with_too_many_positional_arguments():
    with pytest.raises(TypeError, match="LayerSpec takes at most 13 positional arguments"):
        kr.LayerSpec(*range(1, 15))


@pytest.mark.parametrize("call", [
    lambda: kr.init_params({"in_features": 2, "n_nodes": 3}),
    lambda: kr.forward(None, {}, np.ones((1, 2))),
    lambda: kr.forward({"in_features": 2}, {}, np.ones((1, 2)), backend="numpy"),
], ids=["init_params(dict)", "forward(None)", "forward(dict)"])
def test_a_spec_that_is_not_a_layer_spec_is_named(call):
    with pytest.raises(ValueError, match="spec must be a kinn_ref.LayerSpec, got (dict|NoneType)"):
        call()


@pytest.mark.parametrize("seed", [-1, 1.5, "a", True])
def test_bad_seeds_are_named(seed):
    spec = kr.LayerSpec(2, 3)
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0 or a numpy.random.Generator, got "):
        kr.init_params(spec, seed=seed)
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0"):
        kr.KINN(2, [3], 1, seed=seed)
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0"):
        kr.KINNLayers(3, seed=seed)


def test_good_seeds_still_work():
    spec = kr.LayerSpec(2, 3)
    a = kr.init_params(spec, seed=np.int64(3))
    b = kr.init_params(spec, seed=np.random.default_rng(3))
    assert np.array_equal(a["W"], b["W"])
    assert kr.init_params(spec, seed=None)["W"].shape == (3, 2)


@pytest.mark.parametrize("hidden", [3, "ab", None])
def test_kinn_hidden_dims_must_be_a_sequence(hidden):
    with pytest.raises(ValueError, match="hidden_dims must be a sequence of ints"):
        kr.KINN(3, hidden, 2)


@pytest.mark.parametrize("dt,match", [(0.0, "dt must be a finite number > 0, got 0.0"),
                                      (-1.0, "dt must be a finite number > 0, got -1.0"),
                                      (float("nan"), "dt must be a finite number > 0, got nan"),
                                      (float("inf"), "dt must be a finite number > 0, got inf"),
                                      (1e-320, "dt must be at least")])
def test_spectral_radius_validates_dt(dt, match):
    from kinn_ref.linear_analysis import amplification_matrix, spectral_radius
    spec = kr.LayerSpec(2, 3, coupling="dense")
    params = kr.init_params(spec)
    with pytest.raises(ValueError, match=match):
        spectral_radius(spec, params, dt)
    with pytest.raises(ValueError, match=match):
        amplification_matrix(spec, params, dt)
    assert spectral_radius(spec, params, 0.1) == spectral_radius(spec, params)


def test_spectral_radius_names_a_bad_spec():
    from kinn_ref.linear_analysis import spectral_radius
    with pytest.raises(ValueError, match="spec must be a kinn_ref.LayerSpec"):
        spectral_radius(None, {}, 0.1)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_tape_keeps_its_own_copy_of_x_and_V0(backend):
    check_tape_owns_its_inputs(backend)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_backward_refuses_another_spec_changed_params_and_another_dtype(backend):
    check_backward_refuses_mismatches(backend)


def test_a_layer_updated_after_backward_trains_on_and_one_updated_before_is_refused():
    layer = kr.KINNLayer(3, 4, coupling="dense", n_steps=3)
    x = np.random.default_rng(0).standard_normal((5, 3))
    for _ in range(2):                                     # forward, backward, update in place: legitimate
        y = layer.forward(x)
        layer.backward(np.ones_like(y))
        for k in layer.trainable:
            layer.params[k] -= 0.01 * layer.grads[k]
    y = layer.forward(x)
    layer.params["b"] += 0.01
    with pytest.raises(kr.TapeMismatchError, match=r"params\['b'\] changed since the forward pass"):
        layer.backward(np.ones_like(y))


def test_the_tolerance_policy_names_what_it_lacks():
    from kinn_ref.tolerances import relative_error, tolerance
    assert tolerance("float64") == 1e-12 and tolerance(np.float32, "gpu") == 1e-5
    with pytest.raises(ValueError, match="dtype must be float32 or float64"):
        tolerance(np.float16)
    with pytest.raises(ValueError, match="device 'cpu' or 'gpu'"):
        tolerance("float64", "tpu")
    with pytest.raises(ValueError, match=r"shape \(2,\) differs from the expected \(3,\)"):
        relative_error(np.zeros(2), np.zeros(3))
    assert relative_error(np.array([3.0, 4.0]), np.zeros(2)) == 5.0      # all-zero expected: absolute
    assert relative_error(np.array([1.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1 / np.sqrt(5))
