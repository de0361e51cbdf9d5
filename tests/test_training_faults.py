"""Faults a training run must survive: damaged checkpoint files and kills at any point of a run."""
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from kinn_ref.cli import main
from kinn_ref.training import CheckpointError, Trainer, load_checkpoint

TINY = {"model": "kinn", "input_dim": 2, "hidden_dims": [], "output_dim": 2, "dt": 0.5, "n_steps": 2, "seed": 1}


def _tiny_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2))
    Trainer(TINY, optimizer="sgd", lr=1e-2, batch_size=4, progress=False, out_dir=tmp_path).fit(x, x[:, ::-1], 1)
    return tmp_path / "checkpoint.npz"


def _same(a, b):
    return (a.meta == b.meta and set(a.params) == set(b.params)
            and all(np.array_equal(a.params[k], b.params[k]) and a.params[k].dtype == b.params[k].dtype
                    for k in a.params)
            and a.optimizer["slots"].keys() == b.optimizer["slots"].keys()
            and all(np.array_equal(a.optimizer["slots"][s][k], b.optimizer["slots"][s][k])
                    for s in a.optimizer["slots"] for k in a.optimizer["slots"][s]))


def test_every_byte_flip_of_a_checkpoint_loads_identically_or_raises_checkpoint_error(tmp_path, request):
    """Flip each byte (every 9th by default, every one with --runslow): a load either returns exactly the
    saved content or raises CheckpointError, never another exception."""
    path = _tiny_checkpoint(tmp_path)
    raw = path.read_bytes()
    saved = load_checkpoint(path)
    stride = 1 if request.config.getoption("--runslow") else 9
    bad = tmp_path / "flipped.npz"
    outcomes = {"identical": 0, "refused": 0}
    for i in range(0, len(raw), stride):
        flipped = bytearray(raw)
        flipped[i] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            loaded = load_checkpoint(bad)
        except CheckpointError as exc:
            assert str(bad) in str(exc)
            outcomes["refused"] += 1
        else:
            assert _same(loaded, saved), f"byte {i}: a damaged checkpoint loaded with other content"
            outcomes["identical"] += 1
    assert outcomes["refused"] > 0.5 * sum(outcomes.values())


def _offset(path, where):
    """Byte offset of a field of the archive's first member: in its central-directory entry (``"version"``
    needed to extract, general-purpose ``"flags"``: bit 0 encrypted, bit 5 patched; ``"method"`` of
    compression) or the first byte of its ``.npy`` header dictionary (``"npy header"``)."""
    with zipfile.ZipFile(path) as archive:
        start, first = archive.start_dir, archive.infolist()[0]
    raw = path.read_bytes()
    if where == "npy header":
        name_len, extra_len = struct.unpack("<HH", raw[first.header_offset + 26:first.header_offset + 30])
        return first.header_offset + 30 + name_len + extra_len + 10     # magic 6, version 2, length 2
    return start + {"version": 6, "flags": 8, "method": 10}[where]


@pytest.mark.parametrize("where", ["version", "flags", "method", "npy header"])
def test_damaged_zip_headers_are_checkpoint_errors_for_trainer_and_commands(tmp_path, capsys, where):
    """Damage that zipfile and numpy report with NotImplementedError, RuntimeError or tokenize errors is a
    CheckpointError for load_checkpoint, Trainer.fit(resume=...) and a one-line error of the commands."""
    path = _tiny_checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[_offset(path, where)] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checkpoint .*checkpoint.npz is corrupt"):
        load_checkpoint(path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 2))
    trainer = Trainer(TINY, optimizer="sgd", lr=1e-2, batch_size=4, progress=False, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match="corrupt"):
        trainer.fit(x, x[:, ::-1], 2, resume=True)
    capsys.readouterr()
    assert main(["stability", "--checkpoint", str(path), "--no-plots", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


CHILD = """
import sys
from pathlib import Path
import numpy as np
from kinn_ref.training import Trainer
out, epochs = Path(sys.argv[1]), int(sys.argv[2])
x, y = {data}
trainer = Trainer({config!r}, **{settings!r}, out_dir=out)
print("training", flush=True)
trainer.fit(x, y, epochs, resume=True if (out / "checkpoint.npz").exists() else None)
"""
KILL_CONFIG = {"model": "kinn", "input_dim": 2, "hidden_dims": [3], "output_dim": 2, "dt": 0.5, "n_steps": 3,
               "head": True, "seed": 2, "options": {"order": 2, "coupling": "kirchhoff"}}
KILL_SETTINGS = {"lr": 1e-2, "batch_size": 12, "seed": 7, "guard": True, "penalty": 1e-3, "progress": False,
                 "schedule": {"kind": "cosine", "warmup_steps": 2}}
KILL_DATA = "(lambda r: (r, np.stack([np.sin(r[:, 0]), r[:, 1] * r[:, 0]], 1)))(np.random.default_rng(0)." \
            "standard_normal((12, 2)))"


def _run_state(out):
    """(checkpoint epoch or 0, epochs in the log); asserts the two agree as a crash-consistent run must."""
    from kinn_ref.training.metrics_log import read_metrics
    ckpt = out / "checkpoint.npz"
    epoch = load_checkpoint(ckpt).epoch if ckpt.exists() else 0       # never a CheckpointError
    logged = [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] if (out / "metrics.jsonl").exists() else []
    assert logged == list(range(1, len(logged) + 1)) and len(logged) >= epoch, (epoch, logged)
    return epoch, logged


def test_runs_killed_at_random_points_resume_to_the_uninterrupted_result(tmp_path, request):
    """A real training process (numpy backend) killed with SIGKILL at random moments, several times, then
    run to the end: after every kill the checkpoint loads and the log covers its epoch; the last start
    removes the killed writes' temporary files, and the result equals an uninterrupted run bitwise."""
    from kinn_ref.training.metrics_log import read_metrics
    epochs, kills = 20, (25 if request.config.getoption("--runslow") else 3)
    code = CHILD.format(data=KILL_DATA, config=KILL_CONFIG, settings=KILL_SETTINGS)
    x, y = eval(KILL_DATA)
    reference = Trainer(KILL_CONFIG, **KILL_SETTINGS, out_dir=tmp_path / "reference")
    began = time.perf_counter()
    reference.fit(x, y, epochs)
    seconds_per_epoch = (time.perf_counter() - began) / epochs
    rng = random.Random(1234)
    out, landed, attempts, scale = tmp_path / "killed", 0, 0, 1.0
    while landed < kills and attempts < 10 * kills:
        attempts += 1
        done = _run_state(out)[0] if out.exists() else 0
        if done == epochs:          # a run the kill came too late for: start it again from scratch
            for p in out.iterdir():
                p.unlink()
            done = 0
        proc = subprocess.Popen([sys.executable, "-c", code, str(out), str(epochs)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "training\n", proc.stderr.read()
        time.sleep(rng.uniform(0.0, scale * (epochs - done) * seconds_per_epoch))
        os.kill(proc.pid, signal.SIGKILL)
        returncode = proc.wait(60)
        proc.stdout.close()
        proc.stderr.close()
        assert returncode in (0, -signal.SIGKILL)
        if _run_state(out)[0] == epochs:
            scale *= 0.7            # the run was (all but) over: aim earlier
            continue
        landed += 1
    assert landed == kills
    final = subprocess.run([sys.executable, "-c", code, str(out), str(epochs)], capture_output=True, text=True,
                           timeout=60)
    assert final.returncode == 0, final.stderr
    assert _run_state(out) == (epochs, list(range(1, epochs + 1)))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.npz", "metrics.jsonl"]
    a, b = load_checkpoint(tmp_path / "reference" / "checkpoint.npz"), load_checkpoint(out / "checkpoint.npz")
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    assert all(np.array_equal(a.optimizer["slots"][s][k], b.optimizer["slots"][s][k])
               for s in a.optimizer["slots"] for k in a.optimizer["slots"][s])
    assert a.meta["rng_state"] == b.meta["rng_state"] and a.meta["layer_dt"] == b.meta["layer_dt"]

    def without_time(path):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in read_metrics(path)]

    assert without_time(out / "metrics.jsonl") == without_time(tmp_path / "reference" / "metrics.jsonl")
