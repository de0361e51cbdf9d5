"""Kernels compiled ahead in a second process (kinn_ref.tasks.background, used by kinn-ref demo)."""
import subprocess
import sys

import pytest

from kinn_ref.backends import available_backends
from kinn_ref.tasks.background import BackgroundWarmUp, main

needs_numba = pytest.mark.skipif("numba" not in available_backends(), reason="numba backend not usable here")

FIRST_PASS_CACHE_STATS = """
from kinn_ref.backends.numba_backend.loops import pass_kernels
from kinn_ref.tasks.run import warm_up
warm_up("oscillator", "kinn-k1", backend="numba")
k = pass_kernels("expeuler", "cells")
print(sum(k.forward_chunks.stats.cache_hits.values()), sum(k.forward_chunks.stats.cache_misses.values()),
      sum(k.backward_chunks.stats.cache_hits.values()), sum(k.backward_chunks.stats.cache_misses.values()))
"""


def test_other_backends_start_nothing(capsys):
    with BackgroundWarmUp("numpy", [("oscillator", "kinn-k1")]) as warm:
        assert warm.process is None
        warm.wait("oscillator")
    assert warm.seconds == {} and warm.failure is None
    assert main(["numpy", "oscillator:kinn-k1"]) == 0
    assert capsys.readouterr().out.startswith("skipped nothing to compile ahead for numpy")


@needs_numba
def test_a_warmed_up_model_finds_its_kernels_in_the_cache():
    with BackgroundWarmUp("numba", [("oscillator", "kinn-k1")]) as warm:
        warm.wait("oscillator")
    assert warm.failure is None
    if warm.skipped is not None:
        pytest.skip(f"no writable numba cache here: {warm.skipped}")
    assert ("oscillator", "kinn-k1") in warm.seconds
    out = subprocess.run([sys.executable, "-c", FIRST_PASS_CACHE_STATS], capture_output=True, text=True,
                         check=True).stdout.split()
    fwd_hits, fwd_misses, bwd_hits, bwd_misses = map(int, out)
    assert fwd_hits >= 1 and bwd_hits >= 1 and fwd_misses == 0 and bwd_misses == 0


@needs_numba
def test_a_failing_second_process_is_reported_not_raised():
    with BackgroundWarmUp("numba", [("oscillator", "no-such-model")]) as warm:
        assert warm.wait("oscillator") >= 0
    assert warm.failure is not None and "no-such-model" in warm.failure


@needs_numba
def test_a_run_that_fails_in_the_second_process_is_reported_and_left_to_the_caller(tmp_path, monkeypatch):
    from kinn_ref.tasks import background
    monkeypatch.setattr(background, "second_core_available", lambda: True)
    job = {"task": "oscillator", "model": "no-such-model", "size": "small", "seed": 0,
           "out_dir": str(tmp_path / "run")}
    with BackgroundWarmUp("numba", [], train=[job]) as warm:
        assert warm.trains("oscillator", "no-such-model") and not warm.trains("oscillator", "kinn-k1")
        finished, seconds = warm.wait_trained("oscillator", "no-such-model")
    assert not finished and seconds >= 0
    assert warm.failure is not None and "no-such-model" in warm.failure


def test_one_core_starts_nothing(monkeypatch):
    from kinn_ref.tasks import background
    monkeypatch.setattr(background, "second_core_available", lambda: False)
    job = {"task": "oscillator", "model": "kinn-k1", "size": "small", "seed": 0, "out_dir": "unused"}
    with BackgroundWarmUp("numba", [("oscillator", "kinn-k1")], train=[job]) as warm:
        assert warm.process is None and not warm.trains("oscillator", "kinn-k1")
        assert warm.wait_trained("oscillator", "kinn-k1")[0] is False


def test_load_trained_refuses_a_folder_without_a_finished_run(tmp_path):
    from kinn_ref.tasks.run import load_trained, train_task
    with pytest.raises(ValueError, match="holds no finished run"):
        load_trained("oscillator", "kinn-k1", tmp_path)
    train_task("oscillator", "kinn-k1", out_dir=tmp_path, progress=False, epochs=2)
    result, records, trainer = load_trained("oscillator", "kinn-k1", tmp_path, epochs=2)
    assert result["epochs"] == 2 and [r["epoch"] for r in records] == [1, 2] and trainer.epoch == 2
    (tmp_path / "metrics.jsonl").write_text((tmp_path / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    with pytest.raises(ValueError, match="disagree"):
        load_trained("oscillator", "kinn-k1", tmp_path)
