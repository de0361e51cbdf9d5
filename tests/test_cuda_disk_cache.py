"""The on-disk cache of the cuda kernels (kinn_ref.backends.cuda_backend.runtime.disk_cache)."""
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from kinn_ref.backends.cuda_backend.runtime import disk_cache
from kinn_ref.backends.cuda_backend.runtime.compat import simulator_active


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(disk_cache.ENV_DIR, raising=False)
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert disk_cache.cache_root() == tmp_path / "xdg" / "kinn_ref" / "cuda"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert disk_cache.cache_root() == tmp_path / "numba" / "kinn_ref-cuda"
    monkeypatch.setenv(disk_cache.ENV_DIR, str(tmp_path / "own"))
    assert disk_cache.cache_root() == tmp_path / "own"
    tag = disk_cache.cache_dir().name
    assert disk_cache.cache_dir().parent == tmp_path / "own" and len(tag) == 16 and int(tag, 16) >= 0


def test_version_tag_hashes_the_package_sources(monkeypatch, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(disk_cache, "_PACKAGE", tmp_path)
    monkeypatch.setattr(disk_cache, "_TAG", None)
    first = disk_cache._version_tag()
    monkeypatch.setattr(disk_cache, "_TAG", None)
    assert disk_cache._version_tag() == first
    (tmp_path / "a.py").write_text("x = 2\n")
    monkeypatch.setattr(disk_cache, "_TAG", None)
    assert disk_cache._version_tag() != first


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(disk_cache.ENV_SWITCH, "0")
    if not simulator_active():
        assert disk_cache.location() == f"not cached on disk ({disk_cache.ENV_SWITCH}=0)"
    assert not disk_cache.enabled()


@pytest.mark.skipif(not simulator_active(), reason="checks the simulator's behaviour")
def test_the_simulator_caches_nothing():
    assert not disk_cache.enabled()
    assert "simulator" in disk_cache.location()
    kernels = SimpleNamespace(a=(object(), [object()]))
    assert disk_cache.enable(kernels) is kernels


def test_every_built_kernel_gets_the_cache_without_a_gpu(tmp_path):
    # Kernels are created (not compiled) without a GPU, so this runs outside the simulator anywhere.
    script = textwrap.dedent("""
        import json, numpy as np
        from kinn_ref.backends.cuda_backend.families import cell_static
        from kinn_ref.backends.cuda_backend.runtime import device, disk_cache
        fill = device._fill_kernel(np.dtype("float32")).fill_kernel
        built = cell_static.static_kernels(np.dtype("float64"), 2, "linear", 3, 8, "last", False)
        forward, backward = built.forward, built.backward
        step = device._fill_kernel(np.dtype("float64")).fill_kernel
        print(json.dumps({"location": disk_cache.location(),
                          "caches": [type(k._cache).__name__ for k in (fill, forward, backward, step)],
                          "paths": [k._cache.cache_path for k in (fill, forward, backward, step)],
                          "index": [k._cache._cache_file._index_name for k in (fill, forward, backward, step)]}))
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env[disk_cache.ENV_DIR] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    here = str(tmp_path / disk_cache.cache_dir().name)
    assert got["location"] == here and got["caches"] == ["Cache"] * 4 and got["paths"] == [here] * 4
    assert len(set(got["index"])) == 4, "kernels of other dtypes or builders must not share index files"
    assert got["index"][1].startswith("cell_static") and got["index"][2].startswith("cell_static")


_RUN = textwrap.dedent("""
    import json, sys
    import numpy as np
    import kinn_ref as kr
    from kinn_ref.backends.cuda_backend.runtime import device, disk_cache
    grid = {"grid_shape": (8,)} if sys.argv[1] == "grid" else {}
    spec = kr.LayerSpec(3, 16, order=2, coupling=sys.argv[1], integrator=sys.argv[2], n_steps=4, **grid)
    p = kr.init_params(spec, seed=0)
    x = np.random.default_rng(0).standard_normal(spec.input_shape(5))
    y, t = kr.forward(spec, p, x, backend="cuda")
    g = kr.backward(spec, p, t, np.ones_like(y))
    hits = misses = 0
    def walk(obj):
        global hits, misses
        if disk_cache._is_kernel(obj):
            hits += sum(obj.stats.cache_hits.values()); misses += sum(obj.stats.cache_misses.values())
        elif isinstance(obj, (tuple, list)):
            for o in obj: walk(o)
        elif type(obj).__name__ == "SimpleNamespace":
            for o in vars(obj).values(): walk(o)
    for get in device.BUILDERS.values():
        for kernels in get.cache.values():
            walk(kernels)
    np.savez(sys.argv[3], y=y, **g)
    print(json.dumps({"hits": hits, "misses": misses, "location": disk_cache.location()}))
""")


@pytest.mark.skipif(simulator_active(), reason="the simulator compiles nothing to cache")
@pytest.mark.parametrize("coupling, integrator", [("none", "expeuler"), ("dense", "implicit"), ("grid", "rk4")])
def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path, coupling, integrator):
    import numpy as np
    env = dict(os.environ, **{disk_cache.ENV_DIR: str(tmp_path / "cache")})
    runs = []
    for i in range(2):
        out = subprocess.run([sys.executable, "-c", _RUN, coupling, integrator, str(tmp_path / f"r{i}.npz")],
                             env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["misses"] > 0 and runs[0]["location"].startswith(str(tmp_path / "cache"))
    assert runs[1] == dict(runs[0], hits=runs[1]["hits"], misses=0) and runs[1]["hits"] >= runs[0]["misses"]
    first, second = np.load(tmp_path / "r0.npz"), np.load(tmp_path / "r1.npz")
    assert sorted(first) == sorted(second)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])


@pytest.mark.skipif(simulator_active(), reason="the simulator compiles nothing to cache")
def test_an_unwritable_cache_folder_compiles_without_caching(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = dict(os.environ, **{disk_cache.ENV_DIR: str(blocker / "cache")})
    out = subprocess.run([sys.executable, "-c", _RUN, "none", "euler", str(tmp_path / "r.npz")],
                         env=env, capture_output=True, text=True, check=True)
    assert "not writable" in json.loads(out.stdout.strip().splitlines()[-1])["location"]
