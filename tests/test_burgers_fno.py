"""The Fourier-neural-operator peer on Burgers (docs/examples/burgers_fno.py; the ``fno`` extra)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from kinn_ref.tasks.burgers import gaussian_random_field, solve_burgers
from kinn_ref.tasks.registry import Dataset
from kinn_ref.training.losses import relative_l2

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "examples" / "burgers_fno.py"


@pytest.fixture(scope="module")
def peer():
    pytest.importorskip("torch")
    pytest.importorskip("neuralop")
    spec = importlib.util.spec_from_file_location("burgers_fno", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_burgers():
    u0 = gaussian_random_field(12, 16, np.random.default_rng(0))
    u1 = solve_burgers(u0, 1.0)
    return Dataset(u0[:8], u1[:8], u0[8:], u1[8:], info={"t_end": 1.0, "nu": 0.1, "length": 1.0})


def test_the_torch_loss_is_the_project_relative_l2(peer):
    import torch
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((5, 16)), rng.standard_normal((5, 16))
    value = peer._relative_l2_torch(torch.from_numpy(pred), torch.from_numpy(target)).item()
    assert abs(value - relative_l2(pred, target)[0]) < 1e-12


def test_the_schedule_warms_up_then_decays_to_zero(peer):
    rates = [peer._lr(step, 100, 10, 1.0) for step in range(101)]
    assert rates[0] == 0.1 and rates[9] == 1.0 and rates[10] == 1.0
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and abs(rates[100]) < 1e-12


def test_a_few_epochs_learn_and_report_the_baselines(peer):
    data = _small_burgers()
    first = peer.measure({"epochs": 1, "width": 16, "modes": 4, "layers": 2, "batch": 4, "lr": 1e-3}, dataset=data)
    later = peer.measure({"epochs": 20, "width": 16, "modes": 4, "layers": 2, "batch": 4, "lr": 1e-2}, dataset=data)
    assert np.isfinite(first["relative_l2"]) and later["relative_l2"] < 0.5 * first["relative_l2"]
    assert set(later["baselines"]) == {"no learning: conserved mean of u(x,0)",
                                       "no learning: linear heat eq. u_t = nu u_xx"}
    assert later["n_train"] == 8 and later["parameters"] > 0
    with pytest.raises(ValueError, match="unknown keys"):
        peer.measure({"width ": 8}, dataset=data)
    with pytest.raises(ValueError, match="size must be one of"):
        peer.measure({"size": "huge"}, dataset=data)
