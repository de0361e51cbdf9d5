"""The install as a new user meets it: the README's core install in a fresh virtual environment runs every
subcommand's smoke path, a missing extra is one line naming it, and ``kinn_ref.analysis`` cannot be shadowed
by a folder called ``analysis`` in the working directory."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(argv, cwd, env=None, timeout=600):
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _clean_env():
    """The environment without what would leak the test's own install or its simulator into the child."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_ENABLE_CUDASIM", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A virtual environment with only ``pip install -e REPO`` (the core install, no extras)."""
    if os.environ.get("KINN_REF_SKIP_VENV") == "1":
        pytest.skip("KINN_REF_SKIP_VENV=1")
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True).create(root)
    python = root / "bin" / "python"
    res = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(REPO)],
               cwd=root, env=_clean_env(), timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return root


def test_core_install_runs_every_subcommand(fresh_venv, tmp_path):
    """Every ``kinn-ref`` subcommand's smoke path, after the core install alone."""
    from kinn_ref.cli import COMMANDS
    exe = str(fresh_venv / "bin" / "kinn-ref")
    env = _clean_env()
    smoke = {
        "demo": ["demo", "--quick", "--backend", "numpy", "--out", "demo"],
        "train": ["train", "--backend", "numpy", "--epochs", "1", "--no-progress"],
        "solve-pde": ["solve-pde", "--points", "8", "--t-end", "0.01", "--backend", "numpy"],
        "bench": ["bench", "--configs", "cell", "--dtypes", "float64", "--repeats", "1", "--no-memory",
                  "--no-compile", "--no-torch"],
        "stability": ["stability", "--resolution", "4"],
        "golden": ["golden", "verify", "--backend", "numpy", "--cases", "none-euler-last*"],
        "sweep": ["sweep", "--grid", "epochs=1", "--no-progress"],
    }
    assert set(smoke) == set(COMMANDS), "every subcommand has a smoke path here"
    res = _run([exe, "--version"], tmp_path, env)
    assert res.returncode == 0 and res.stdout.startswith("kinn-ref "), res.stderr
    for name, argv in smoke.items():
        res = _run([exe] + argv, tmp_path, env)
        assert res.returncode == 0, f"kinn-ref {name}: rc {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr, res.stderr
    res = _run([exe, "golden", "export", "golden", "--cases", "none-euler-last*"], tmp_path, env)
    assert res.returncode == 0 and (tmp_path / "golden" / "manifest.json").is_file(), res.stderr
    # the defaults write under ./kinn-runs/
    assert {p.name for p in (tmp_path / "kinn-runs").iterdir()} >= {"train", "solve-pde", "stability"}


def test_core_install_names_the_missing_extra(fresh_venv, tmp_path):
    """scikit-learn (digits), mnist1d and numba-cuda (cuda) are extras: one line naming the extra, exit 2."""
    exe = str(fresh_venv / "bin" / "kinn-ref")
    env = _clean_env()
    cases = [(["train", "--task", "digits", "--backend", "numpy", "--epochs", "1"], "kinn-ref[digits]"),
             (["train", "--task", "mnist1d", "--model", "mlp", "--backend", "numpy", "--epochs", "1"],
              "kinn-ref[mnist1d]"),
             (["train", "--backend", "cuda", "--epochs", "1"], "kinn-ref[cuda]")]
    for argv, extra in cases:
        res = _run([exe] + argv, tmp_path, env)
        assert res.returncode == 2, res.stdout + res.stderr
        assert extra in res.stderr and "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_analysis_is_not_shadowed_by_a_local_folder(tmp_path):
    """A user's own ``analysis/`` in the working directory (first on ``sys.path``) is not imported."""
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "__init__.py").write_text("raise ImportError('the user folder was imported')\n")
    (tmp_path / "analysis" / "stability.py").write_text("raise ImportError('the user folder was imported')\n")
    code = ("import kinn_ref.analysis.stability as s, kinn_ref.analysis.golden_store as g; "
            "print(s.__file__); print(g.PACKAGED)")
    res = _run([sys.executable, "-c", code], tmp_path, _clean_env())
    assert res.returncode == 0, res.stderr
    module_file, packaged = res.stdout.split()
    assert Path(module_file).resolve().parent != (tmp_path / "analysis").resolve()
    assert (Path(packaged) / "manifest.json").is_file()
    res = _run([sys.executable, "-m", "kinn_ref.cli", "stability", "--no-plots", "--out", "st"], tmp_path,
               _clean_env())
    assert res.returncode == 0, res.stderr
