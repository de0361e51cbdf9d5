"""MNIST-1D: the generator's data, the window features, the pooled grid readout, the task and --data-seed."""
import random
import sys

import numpy as np
import pytest

from kinn_ref.cli import main
from kinn_ref.network import KINN
from kinn_ref.tasks.mnist1d import make_mnist1d, window_features
from kinn_ref.tasks.registry import TASKS, Dataset
from kinn_ref.tasks.run import train_task


def test_standard_split_has_the_published_sizes_and_leaves_global_random_state_alone():
    pytest.importorskip("mnist1d")
    np.random.seed(7)
    random.seed(7)
    expected_np, expected_py = np.random.random(), random.random()
    np.random.seed(7)
    random.seed(7)
    x_train, y_train, x_test, y_test = make_mnist1d()
    assert x_train.shape == (4000, 40) and x_test.shape == (1000, 40)
    assert y_train.dtype == np.int64 and set(np.unique(y_train)) == set(range(10))
    assert np.bincount(np.concatenate([y_train, y_test])).tolist() == [500] * 10
    assert abs(np.concatenate([x_train, x_test]).std() - 1.0) < 1e-9   # the package standardises the series
    assert (np.random.random(), random.random()) == (expected_np, expected_py)


def test_the_data_seed_draws_another_split_and_the_same_seed_the_same():
    pytest.importorskip("mnist1d")
    a, b, c = make_mnist1d(0, num_samples=100), make_mnist1d(0, num_samples=100), make_mnist1d(1, num_samples=100)
    assert a[0].shape == (80, 40) and a[2].shape == (20, 40)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not np.allclose(a[0], c[0])


@pytest.mark.parametrize("kwargs,match", [({"seed": -1}, "seed"), ({"seed": 2 ** 32}, "seed"),
                                          ({"seed": 1.5}, "seed"), ({"num_samples": 15}, "num_samples"),
                                          ({"num_samples": 0}, "num_samples")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_mnist1d(**kwargs)


def test_a_missing_generator_names_the_extra(monkeypatch):
    from kinn_ref._optional import MissingExtraError
    monkeypatch.setitem(sys.modules, "mnist1d", None)      # import mnist1d raises ImportError
    with pytest.raises(MissingExtraError, match=r"kinn-ref\[mnist1d\]"):
        make_mnist1d(num_samples=10)


def test_window_features_are_neighbours_zero_outside():
    x = np.arange(1.0, 6.0)[None]
    f = window_features(x, 1)
    assert f.shape == (1, 5, 3)
    assert f[0, 0].tolist() == [0.0, 1.0, 2.0] and f[0, 4].tolist() == [4.0, 5.0, 0.0]
    assert np.array_equal(window_features(x, 0)[..., 0], x)
    with pytest.raises(ValueError, match="radius"):
        window_features(x, -1)
    with pytest.raises(ValueError, match="shape"):
        window_features(x[0], 1)


@pytest.mark.parametrize("pool", ["flatten", "mean"])
def test_pooled_grid_readout_gradients_match_finite_differences(pool):
    rng = np.random.default_rng(0)
    net = KINN(3, [2], 4, dt=0.5, n_steps=3, head=True, pool=pool, coupling="grid", grid_shape=(5,),
               boundary="neumann")
    x = rng.standard_normal((2, 5, 3))
    y = net.forward(x)
    assert y.shape == (2, 4)
    dy = rng.standard_normal(y.shape)
    dx = net.backward(dy)
    grads = {k: v.copy() for k, v in net.gradients().items()}
    h = 1e-6
    for name in ("layers.0.W", "layers.1.G_raw", "head.W"):
        p = net.parameters()[name]
        direction = rng.standard_normal(p.shape)
        p += h * direction
        up = np.sum(net.forward(x) * dy)
        p -= 2 * h * direction
        down = np.sum(net.forward(x) * dy)
        p += h * direction
        assert abs((up - down) / (2 * h) - np.sum(grads[name] * direction)) < 1e-7 * max(1.0, abs(up))
    direction = rng.standard_normal(x.shape)
    numeric = (np.sum(net.forward(x + h * direction) * dy) - np.sum(net.forward(x - h * direction) * dy)) / (2 * h)
    assert abs(numeric - np.sum(dx * direction)) < 1e-7


def test_pooling_is_refused_without_a_grid_and_for_an_unknown_name():
    with pytest.raises(ValueError, match="pool must be 'points' unless"):
        KINN(3, [], 4, head=True, pool="mean")
    with pytest.raises(ValueError, match="pool"):
        KINN(3, [], 4, head=True, pool="max", coupling="grid", grid_shape=(5,))


def test_every_mnist1d_model_trains_a_step_and_the_baseline_is_the_majority_class():
    rng = np.random.default_rng(0)
    data = Dataset(rng.standard_normal((6, 40)), np.array([1, 1, 2, 3, 1, 0]), rng.standard_normal((4, 40)),
                   np.array([1, 0, 1, 1]))
    task = TASKS["mnist1d"]
    for model in task.models:
        result, records, _ = train_task("mnist1d", model, dataset=data, progress=False, epochs=1, batch_size=3)
        assert 0.0 <= result["value"] <= 1.0 and len(records) == 1
    assert task.baseline_scores(data) == {"no learning: majority class (1), chance": 0.75}


def test_the_task_draws_its_standard_data_unless_a_data_seed_is_given():
    task = TASKS["mnist1d"]
    assert task.seed_of_data(0) == 42 and task.seed_of_data(5) == 42 and task.seed_of_data(5, 3) == 3
    assert TASKS["burgers"].seed_of_data(5) == 5 and TASKS["burgers"].seed_of_data(5, 3) == 3


def test_train_command_takes_a_data_seed(tmp_path, capsys):
    pytest.importorskip("mnist1d")
    import json
    out = tmp_path / "run"
    assert main(["train", "--task", "mnist1d", "--model", "mlp", "--epochs", "1", "--backend", "numpy",
                 "--no-progress", "--data-seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "majority class" in text and "published with the data set" in text and "CNN 0.94" in text
    result = json.loads((out / "result.json").read_text())
    assert result["data_seed"] == 3 and result["n_train"] == 1000 and result["n_test"] == 1000


def test_train_command_names_a_bad_data_seed(tmp_path, capsys):
    assert main(["train", "--task", "mnist1d", "--data-seed", "-1", "--out", str(tmp_path / "r")]) == 2
    assert "--data-seed must be an integer >= 0" in capsys.readouterr().err


def test_config_init_sets_the_initial_conductances_of_every_layer():
    from kinn_ref.parameterization import softplus
    from kinn_ref.training.models import build_model
    config = {"model": "kinn", "input_dim": 3, "hidden_dims": [2], "output_dim": 4, "head": True, "pool": "flatten",
              "options": {"coupling": "grid", "grid_shape": [5]}}
    model = build_model(dict(config, init={"edge_conductance": 0.1, "leak_conductance": 0.5}))
    for layer in model.layers:
        assert np.allclose(softplus(layer.params["G_raw"]), 0.1) and np.allclose(softplus(layer.params["g_raw"]), 0.5)
    raw = build_model(dict(config, init={"edge_conductance": 0.1}, options=dict(config["options"], param="raw")))
    assert np.all(raw.layers[0].params["G_raw"] == 0.1)
    with pytest.raises(ValueError, match=r"config\['init'\]\['edge_conductance'\] must be a finite number > 0"):
        build_model(dict(config, init={"edge_conductance": 0.0}))
    with pytest.raises(ValueError, match="keys among"):
        build_model(dict(config, init={"capacitance": 1.0}))
    with pytest.raises(ValueError, match="needs coupling in"):
        build_model({"model": "kinn", "input_dim": 3, "hidden_dims": [], "output_dim": 4,
                     "init": {"edge_conductance": 0.1}})


def _search_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mnist1d_search.py"
    spec = importlib.util.spec_from_file_location("mnist1d_search", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_search_script_trains_each_layout_and_refuses_unknown_keys():
    pytest.importorskip("mnist1d")
    search = _search_script()
    common = {"epochs": 1, "backend": "numpy"}
    window = search.measure(dict(common, hidden=[2], out_channels=2, edge_conductance=0.1, pool="mean"))
    assert 0.0 <= window["accuracy"] <= 1.0 and len(window["learned_edge_conductance"]) == 3
    assert abs(window["majority_class_accuracy"] - 0.1) < 0.05
    for layout in ("static", "sequence"):
        row = search.measure(dict(common, input=layout, hidden=[3], n_steps=2))
        assert 0.0 <= row["accuracy"] <= 1.0 and row["learned_edge_conductance"] == []
    assert 0.0 <= search.measure(dict(common, model="mlp", hidden=[8]))["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="unknown keys"):
        search.measure({"hiden": [3]})
    with pytest.raises(ValueError, match="input must be"):
        search.measure(dict(common, input="image"))
