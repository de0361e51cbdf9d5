"""Faults a training run must survive: damaged checkpoint files and kills at any point of a run."""
import struct
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
