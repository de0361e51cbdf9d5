"""The forward pass refuses, before running, a tape that does not fit in the memory available, and says
which checkpoint_every fits."""
import numpy as np
import pytest

import kinn_ref as kr
from helpers import rel_error
from kinn_ref import tape_memory


def _case(n_steps=40, sequence=False, return_sequences=False):
    spec = kr.LayerSpec(2, 5, order=2, coupling="dense", n_steps=n_steps, return_sequences=return_sequences)
    x = np.ones((3, n_steps, 2)) if sequence else np.ones((3, 2))
    return spec, kr.init_params(spec), x


@pytest.mark.parametrize("n_steps,every", [(40, None), (40, 1), (40, 7), (41, 8), (5, 5), (5, 9)])
def test_the_estimate_counts_the_states_the_reference_keeps(n_steps, every):
    spec, params, x = _case(n_steps)
    _, tape = kr.forward(spec, params, x, checkpoint_every=every)
    size = tape_memory.tape_size(spec, 3, n_steps, False, np.float64, every)
    assert size.kept_states == len(tape.states)
    assert size.kept_states * size.state_bytes == sum(s.nbytes for s in tape.states.values())
    assert size.other_bytes == 0
    assert size.copy_bytes == tape.x.nbytes + sum(p.nbytes for p in tape.params_copy.values())


def test_the_estimate_counts_sequence_currents_and_per_step_readouts():
    spec, params, x = _case(12, sequence=True, return_sequences=True)
    y, tape = kr.forward(spec, params, x)
    size = tape_memory.tape_size(spec, 3, 12, True, np.float64)
    assert size.other_bytes == tape.currents.nbytes + y.nbytes
    assert size.copy_bytes == tape.x.nbytes + sum(p.nbytes for p in tape.params_copy.values())


def test_a_tape_too_large_is_refused_at_once_naming_checkpoint_every(monkeypatch):
    spec, params, x = _case(400)
    needed = tape_memory.tape_size(spec, 3, 400, False, np.float64).total
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: needed // 4)
    with pytest.raises(kr.TapeMemoryError) as info:
        kr.forward(spec, params, x)
    err = info.value
    message = str(err)
    assert isinstance(err, MemoryError) and err.needed == needed and err.available == needed // 4
    assert f"pass checkpoint_every={err.checkpoint_every} " in message and err.checkpoint_every > 4
    assert "401 kept states" in message and "is available" in message
    # the suggested interval fits (in half the memory) and gives the same result as the full tape
    kept = tape_memory.tape_size(spec, 3, 400, False, np.float64, err.checkpoint_every)
    assert kept.total <= needed // 8
    y, _ = kr.forward(spec, params, x, checkpoint_every=err.checkpoint_every)
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: None)
    assert np.array_equal(y, kr.forward(spec, params, x)[0])


def test_a_given_checkpoint_interval_that_still_does_not_fit_is_refused(monkeypatch):
    spec, params, x = _case(400)
    fits = tape_memory.tape_size(spec, 3, 400, False, np.float64, 20).total
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: fits)
    kr.forward(spec, params, x, checkpoint_every=20)
    with pytest.raises(kr.TapeMemoryError, match="kept states"):
        kr.forward(spec, params, x, checkpoint_every=2)


def test_when_no_interval_fits_the_message_says_so(monkeypatch):
    spec, params, x = _case(50, sequence=True, return_sequences=True)
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: 1000)
    with pytest.raises(kr.TapeMemoryError, match="no checkpoint_every makes it fit .*currents and readouts alone "
                                                 "are too large.*smaller batch") as info:
        kr.forward(spec, params, x)
    assert info.value.checkpoint_every is None


def test_the_network_passes_the_refusal_on(monkeypatch):
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: 20000)
    net = kr.KINN(2, [4], 1, n_steps=200)
    with pytest.raises(kr.TapeMemoryError, match="checkpoint_every="):
        net.forward(np.ones((8, 2)))


def test_available_memory_reads_meminfo_and_a_cgroup_limit(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemAvailable:    2000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    monkeypatch.setattr(tape_memory, "MEMINFO", meminfo)
    monkeypatch.setattr(tape_memory, "CGROUP", cgroup)
    assert tape_memory.available_memory() == 2000000 * 1024
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("100\n")
    assert tape_memory.available_memory() == 2000000 * 1024
    (cgroup / "memory.max").write_text("1000000\n")
    assert tape_memory.available_memory() == 1000000 - 100


def test_available_memory_on_this_machine_is_a_positive_number_or_unknown():
    available = tape_memory.available_memory()
    assert available is None or available > 0


@pytest.mark.parametrize("coupling", ["dense", "none"])
def test_the_numba_backend_refuses_the_same_way(monkeypatch, coupling):
    if "numba" not in kr.available_backends():
        pytest.skip("the numba backend is not usable here")
    from kinn_ref.backends.numba_backend.backend import default_interval
    spec = kr.LayerSpec(2, 5, coupling=coupling, n_steps=400)
    params, x = kr.init_params(spec), np.ones((3, 2))
    size = tape_memory.tape_size(spec, 3, 400, False, np.float64, default_interval(spec))
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: size.total - 1)
    with pytest.raises(kr.TapeMemoryError, match=f"{size.kept_states} kept states .*checkpoint_every") as info:
        kr.forward(spec, params, x, backend="numba")
    assert info.value.needed == size.total


def test_a_small_tape_does_not_read_the_available_memory(monkeypatch):
    def unreadable():
        raise AssertionError("available memory read for a small tape")
    monkeypatch.setattr(tape_memory, "available_memory", unreadable)
    spec = kr.LayerSpec(3, 4, n_steps=3)
    assert tape_memory.check_tape_memory(spec, np.zeros((2, 3)), np.float64).total <= tape_memory.SMALL_TAPE_BYTES
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    with pytest.raises(AssertionError, match="small tape"):
        tape_memory.check_tape_memory(spec, np.zeros((2, 3)), np.float64)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_backward_of_a_static_input_sums_its_current_cotangent_over_the_steps(backend):
    """A static input's current is the same at every step: the backward keeps its cotangent as (B, N), not
    (B, T, N), and gives the gradients of the same input held over T steps as a sequence."""
    import tracemalloc
    B, T = 8, 2000
    spec = kr.LayerSpec(3, 16, order=1, integrator="expeuler", readout="cells", n_steps=T)
    params = kr.init_params(spec, seed=1)
    x = np.random.default_rng(0).standard_normal((B, 3))
    y, tape = kr.forward(spec, params, x, backend=backend)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    kr.backward(spec, params, tape, dy)                   # compiled and warm
    tracemalloc.start()
    try:
        grads = kr.backward(spec, params, tape, dy)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    full_dI = B * T * spec.total_nodes * 8
    assert peak < full_dI / 4, (peak, full_dI)
    xs = np.repeat(x[:, None], T, axis=1)
    ys, tape_s = kr.forward(spec, params, xs, backend=backend)
    grads_s = kr.backward(spec, params, tape_s, dy)
    np.testing.assert_array_equal(ys, y)
    for k in params:
        assert rel_error(grads[k], grads_s[k]) < 1e-12, k
    assert rel_error(grads["x"], grads_s["x"].sum(axis=1)) < 1e-12
