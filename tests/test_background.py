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
