"""Sweeps on Dask: the same results as the serial run (maps bitwise, golden files byte for byte, training
metrics bitwise), resume without recomputation, retries, and a worker killed mid-sweep."""
import json
import os
import signal

import numpy as np
import pytest

import kinn_ref as kr
from kinn_ref.scaleout.engine import Point, PointStore, SweepEngine, SweepError, digest
from kinn_ref.scaleout.stability_sweep import swept_stability_map

distributed = pytest.importorskip("distributed")


def _map_layer():
    spec = kr.LayerSpec(3, 5, order=2, coupling="kirchhoff", dt=0.2)
    return spec, kr.init_params(spec, seed=3)


def _serial_map(resolution):
    from kinn_ref.analysis.stability_report import stability_map
    spec, params = _map_layer()
    return stability_map(spec, params, resolution=resolution)


def _same_map(a, b):
    assert np.array_equal(a.dts, b.dts) and np.array_equal(a.scales, b.scales)
    for name in a.rho:
        assert a.rho[name].tobytes() == b.rho[name].tobytes()
        assert a.boundary[name].tobytes() == b.boundary[name].tobytes()


def _square(v):
    return v * v


def _numba_threads(_):
    import numba
    return [numba.get_num_threads(), os.environ.get("NUMBA_CACHE_DIR")]



def _flaky(v, path):
    """Fails on its first call for each path (a file marks the first call), then returns v."""
    if not os.path.exists(path):
        open(path, "w").close()
        raise RuntimeError("first attempt fails")
    return v


def test_serial_engine_persists_resumes_and_retries(tmp_path):
    store = PointStore(tmp_path / "points")
    points = [Point(f"p{i}", _square, (i,), digest(i)) for i in range(4)]
    assert SweepEngine(progress=False).run(points, store) == {f"p{i}": i * i for i in range(4)}
    assert sorted(p.name for p in store.folder.iterdir()) == [f"p{i}.json" for i in range(4)]
    # a stored point is not computed again: a function that would fail shows it
    again = [Point(p.key, _flaky, (-1, str(tmp_path / "never")), p.fingerprint) for p in points]
    assert SweepEngine(progress=False).run(again, store)["p2"] == 4
    assert not (tmp_path / "never").exists()
    # another fingerprint is another point
    changed = [Point("p0", _flaky, (7, str(tmp_path / "flag")), digest("other"))]
    with pytest.warns(UserWarning, match="point p0 failed .attempt 1 of 3.*retrying"):
        assert SweepEngine(progress=False).run(changed, store) == {"p0": 7}
    with pytest.raises(SweepError, match="1 of 1 points failed"):
        SweepEngine(retries=0, progress=False).run(
            [Point("q", _flaky, (1, str(tmp_path / "flag2")), digest("q"))], store)


def test_engine_arguments_are_checked():
    with pytest.raises(ValueError, match="--workers"):
        SweepEngine(workers=0)
    with pytest.raises(ValueError, match="--retries"):
        SweepEngine(retries=-1)
    with pytest.raises(ValueError, match="exclude each other"):
        SweepEngine(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="point key"):
        Point("a/b", _square, (1,), "x")


def test_stability_refuses_workers_without_the_map(tmp_path, capsys):
    from kinn_ref.cli import main
    rc = main(["stability", "--coupling", "kirchhoff", "--nodes", "4", "--no-plots", "--workers", "2",
               "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--no-plots" in err and "--workers" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_two_workers_with_one_killed_give_the_serial_map(tmp_path, monkeypatch):
    serial = _serial_map(12)
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "kernel-cache"))
    spec, params = _map_layer()
    killed = {}
    with SweepEngine(workers=2, progress=False) as engine:
        pids = sorted(engine.worker_pids().values())
        assert len(pids) == 2 and os.getpid() not in pids
        # each worker's numba threads are the cores over the two workers; they share this kernel cache
        threads = engine.run([Point(f"t{i}", _numba_threads, (i,), digest("t", i)) for i in range(2)],
                             PointStore(tmp_path / "threads"))
        assert {tuple(v) for v in threads.values()} == {(max(1, (os.cpu_count() or 1) // 2),
                                                         str(tmp_path / "kernel-cache"))}
        original = engine.run

        def run(points, store, label="sweep", on_result=None):
            def on(key, result):
                if not killed:
                    os.kill(pids[0], signal.SIGKILL)
                    killed["after"] = key
                    killed["later"] = 0
                else:
                    killed["later"] += 1
            return original(points, store, label, on)
        engine.run = run
        smap = swept_stability_map(spec, params, engine, tmp_path, resolution=12)
    assert killed and killed["later"] > 0          # the kill came while points were still to be computed
    _same_map(serial, smap)


@pytest.mark.slow
def test_stability_command_on_two_workers_matches_serial(tmp_path, capsys):
    from kinn_ref.cli import main
    args = ["stability", "--coupling", "kirchhoff", "--nodes", "5", "--order", "2", "--resolution", "6",
            "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "serial")]) == 0
    out = tmp_path / "dask"
    assert main(args + ["--out", str(out), "--workers", "2"]) == 0
    assert (out / "stability_map.json").read_bytes() == (tmp_path / "serial" / "stability_map.json").read_bytes()
    assert not (out / ".stability_map.points").exists()     # the rows' store is cleared once the map is written
    assert len(json.loads((out / "stability_map.json").read_text())["map"]["dt"]) == 6


def test_golden_export_on_an_existing_cluster_is_byte_for_byte_the_serial(tmp_path):
    from kinn_ref.cli import main
    assert main(["golden", "export", str(tmp_path / "serial"), "--cases", "none-e*", "--no-progress"]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster:
        assert main(["golden", "export", str(tmp_path / "dask"), "--cases", "none-e*", "--scheduler",
                     cluster.scheduler_address, "--no-progress"]) == 0
    names = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "dask").iterdir()) and "manifest.json" in names
    for name in names:
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()


@pytest.mark.slow
def test_training_sweep_on_two_workers_matches_serial_and_resumes(tmp_path, capsys):
    from kinn_ref.cli import main
    args = ["sweep", "--task", "oscillator", "--grid", "lr=0.003,0.01", "--grid", "epochs=2", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "serial")]) == 0
    assert main(args + ["--out", str(tmp_path / "dask"), "--workers", "2"]) == 0
    runs = sorted(p.name for p in (tmp_path / "serial").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert len(runs) == 2
    for run in runs:
        a, b = tmp_path / "serial" / run, tmp_path / "dask" / run
        assert (a / "checkpoint.npz").read_bytes() == (b / "checkpoint.npz").read_bytes()
        drop = lambda text: [{k: v for k, v in json.loads(line).items() if k != "seconds"}  # noqa: E731
                             for line in text.splitlines()]
        assert drop((a / "metrics.jsonl").read_text()) == drop((b / "metrics.jsonl").read_text())
    # run again: nothing is trained again (the checkpoints keep their modification times)
    before = {run: (tmp_path / "serial" / run / "checkpoint.npz").stat().st_mtime_ns for run in runs}
    assert main(args + ["--out", str(tmp_path / "serial")]) == 0
    assert before == {run: (tmp_path / "serial" / run / "checkpoint.npz").stat().st_mtime_ns for run in runs}
    summary = json.loads((tmp_path / "serial" / "sweep.json").read_text())
    assert [p["lr"] for p in summary["points"]] == [0.003, 0.01]


def test_sweep_grid_errors_name_the_argument(capsys):
    from kinn_ref.cli import main
    assert main(["sweep", "--grid", "momentum=0.9"]) == 2
    assert "--grid: NAME must be one of" in capsys.readouterr().err
    assert main(["sweep", "--grid", "lr=fast"]) == 2
    assert "--grid lr: values must be floats" in capsys.readouterr().err
    assert main(["sweep", "--model", "nope"]) == 2
    assert "--model" in capsys.readouterr().err


def test_sweep_reports_a_failing_point_and_saves_the_others(tmp_path, capsys):
    from kinn_ref.cli import main
    out = tmp_path / "grid"
    assert main(["sweep", "--grid", "batch_size=0,16", "--grid", "epochs=1", "--retries", "1",
                 "--no-progress", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "warning: point oscillator-kinn-k1-batch_size=0-epochs=1 failed (attempt 1 of 2)" in err
    assert "1 of 2 points failed after every retry" in err and "batch_size" in err
    summary = json.loads((out / "sweep.json").read_text())
    assert [p.get("failed", False) for p in summary["points"]] == [True, False]
    assert (out / "oscillator-kinn-k1-batch_size=16-epochs=1" / "result.json").is_file()


def test_an_interrupted_map_reuses_its_stored_rows(tmp_path):
    from kinn_ref.scaleout.stability_sweep import store_folder
    spec, params = _map_layer()
    first = swept_stability_map(spec, params, SweepEngine(progress=False), tmp_path, resolution=5)
    _same_map(_serial_map(5), first)
    # the rows stay stored until the caller clears them; a row marked in its file shows it is not recomputed
    row = store_folder(tmp_path) / "row-0002.json"
    record = json.loads(row.read_text())
    record["result"][0]["euler"][0] = 12345.0
    row.write_text(json.dumps(record))
    again = swept_stability_map(spec, params, SweepEngine(progress=False), tmp_path, resolution=5)
    assert again.rho["euler"][2, 0] == 12345.0
    assert np.array_equal(np.delete(again.rho["euler"], 2, 0), np.delete(first.rho["euler"], 2, 0))
    # another layer is another sweep: the stored rows do not apply
    other = kr.init_params(spec, seed=4)
    third = swept_stability_map(spec, other, SweepEngine(progress=False), tmp_path, resolution=5)
    assert third.rho["euler"][2, 0] != 12345.0
