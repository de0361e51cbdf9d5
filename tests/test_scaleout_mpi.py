"""Data-parallel training with MPI: 2 ranks equal 1 process on the same global batch, 1 rank is bitwise the
single process, resume is bitwise with the same rank count, and a failing rank stops every rank with the
last checkpoint intact."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import rel_error
from kinn_ref.training.checkpoint import load_checkpoint

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (install the mpi extra)")
HERE = Path(__file__).parent


def _env():
    root = str(HERE.parent)
    return dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), NUMBA_NUM_THREADS="1")


def _train(out, ranks=None, extra=(), backend="numpy", epochs=3, task="oscillator"):
    cmd = [sys.executable, "-m", "kinn_ref.cli", "train", "--task", task, "--epochs", str(epochs), "--out",
           str(out), "--no-progress", "--backend", backend, *extra]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd, "--distributed", "mpi"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)


def _params(path):
    ckpt = load_checkpoint(path)
    return ckpt.params, ckpt


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=pytest.mark.slow)])
def test_two_ranks_equal_one_process(tmp_path, backend):
    one = _train(tmp_path / "one", backend=backend)
    two = _train(tmp_path / "two", ranks=2, backend=backend)
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    p1, _ = _params(tmp_path / "one" / "checkpoint.npz")
    p2, ckpt = _params(tmp_path / "two" / "checkpoint.npz")
    assert ckpt.meta["extra"]["ranks"] == 2 and ckpt.epoch == 3
    for k in p1:
        assert rel_error(p2[k], p1[k]) <= 1e-12, k
    # rank 0 alone wrote: one metrics file of 3 records, one result
    assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 3
    assert two.stdout.count("held-out") == 1


@pytest.mark.slow
def test_one_rank_is_bitwise_the_single_process_and_resume_is_bitwise(tmp_path):
    assert _train(tmp_path / "single").returncode == 0
    r = _train(tmp_path / "rank", ranks=1)
    assert r.returncode == 0, r.stderr
    a, _ = _params(tmp_path / "single" / "checkpoint.npz")
    b, _ = _params(tmp_path / "rank" / "checkpoint.npz")
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    # 3 epochs on 2 ranks, stopped after epoch 2 and resumed: bitwise with 2 ranks, to rounding with 1
    assert _train(tmp_path / "full", ranks=2).returncode == 0
    full, _ = _params(tmp_path / "full" / "checkpoint.npz")
    for ranks in (2, 1):
        part = tmp_path / f"part{ranks}"
        r = _script("stop", part)
        assert r.returncode == 0 and load_checkpoint(part / "checkpoint.npz").epoch == 2, r.stderr
        r = _train(part, ranks=ranks, extra=("--resume",))
        assert r.returncode == 0, r.stderr
        resumed, _ = _params(part / "checkpoint.npz")
        if ranks == 2:
            assert all(full[k].tobytes() == resumed[k].tobytes() for k in full)
        else:
            assert "written by 2 rank(s), resuming on 1" in r.stderr
            assert all(rel_error(resumed[k], full[k]) <= 1e-12 for k in full)


def _script(action, out):
    return subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(HERE / "mpi_failing_rank.py"), action, str(out)],
                          capture_output=True, text=True, env=_env(), timeout=300)


def test_a_failing_rank_stops_every_rank_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = _script("fail", out)
    assert r.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: error: rank 1: RuntimeError: injected failure of rank 1" in r.stderr, r.stderr
    assert "every rank stops" in r.stderr and "was not applied" in r.stderr
    ckpt = load_checkpoint(out / "checkpoint.npz")       # hash-checked: intact
    assert ckpt.epoch == 1
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_a_bad_argument_under_mpiexec_is_one_line_and_exit_2(tmp_path):
    r = _train(tmp_path / "run", ranks=2, backend="nope")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "kinn-ref train: error: ranks 0, 1: backend must be one of ['cuda', 'numba', 'numpy', 'auto'], got "
        "'nope' (of 2 ranks; every rank stops)"]


def test_a_bad_argument_of_the_device_step_is_one_line_and_exit_2(tmp_path):
    """``--backend cuda --distributed mpi`` builds the device trainer (on the CUDA simulator here), the ranks
    agreeing on its arguments first."""
    r = _train(tmp_path / "run", ranks=1, backend="cuda", extra=("--lr", "-1"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "kinn-ref train: error: rank 0: lr must be a finite number > 0, got -1.0 (of 1 ranks; every rank stops)"]
