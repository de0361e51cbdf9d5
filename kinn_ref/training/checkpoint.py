"""Training checkpoints: one ``.npz`` (no pickles), written atomically, with a SHA-256 digest inside.

Layout of the archive:

- ``param/<name>``: the model's parameters (flat names of ``model.parameters()``);
- ``opt/<slot>/<name>``: the optimizer's state slots;
- ``meta``: a JSON string with the format tag, the model config, the optimizer kind, hyperparameters and
  step count, the RNG state, the epoch, the per-layer ``dt`` and free-form ``extra`` entries, and
  ``sha256``: the digest of every array (name, dtype, shape, bytes, in name order) and of the meta
  itself without the digest.

:func:`load_checkpoint` checks every archive member's CRC-32, recomputes the digest and raises
:class:`CheckpointError` (a ``ValueError``) naming the file for a corrupt, truncated, foreign or tampered
file: every way reading a damaged archive can fail ends in that one exception.

:func:`save_checkpoint` refuses arrays holding NaN or infinity: a checkpoint never holds a non-finite value.
"""
import hashlib
import io
import json
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np

from .atomic import atomic_write

FORMAT = "kinn_ref.checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint cannot be used: corrupt, not a kinn_ref checkpoint, or not matching the run."""


# What reading a damaged .npz can raise, from zipfile (bad headers, unsupported or "encrypted" flags:
# RuntimeError and its subclass NotImplementedError; truncated structures: struct.error, EOFError), zlib,
# and numpy's .npy header parser (ValueError; tokenize.TokenError and SyntaxError from its literal parsing;
# MemoryError and OverflowError when a damaged shape claims an enormous array).
_ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, KeyError, struct.error,
                   RuntimeError, SyntaxError, tokenize.TokenError, MemoryError, OverflowError)


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes
    ----------
    params : dict of str -> ndarray
    optimizer : dict
        ``{"kind", "hyperparameters", "step_count", "slots": {slot: {name: ndarray}}}``.
    meta : dict
        The decoded JSON meta (``config``, ``epoch``, ``rng_state``, ``layer_dt``, ``extra``, ...).
    """

    params: dict
    optimizer: dict
    meta: dict

    @property
    def config(self):
        return self.meta["config"]

    @property
    def epoch(self):
        return self.meta["epoch"]


def _digest(arrays, meta):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def save_checkpoint(path, *, params, optimizer_state, config, epoch, rng_state, layer_dt=None, extra=None):
    """Write a checkpoint to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
    params : dict of str -> ndarray
    optimizer_state : dict
        :meth:`kinn_ref.training.optimizers.Optimizer.state_dict` output.
    config : dict
        The model config (JSON-serialisable).
    epoch : int
        Epochs completed.
    rng_state : dict
        ``numpy.random.Generator.bit_generator.state``.
    layer_dt : dict of str -> float, optional
        Current ``dt`` of each KINN layer (the stability guard may have lowered it).
    extra : dict, optional
        JSON-serialisable run information (schedule, loss, backend, ...).

    Returns
    -------
    str
        The SHA-256 digest recorded in the file.

    Raises
    ------
    ValueError
        When a parameter or optimizer slot holds NaN or infinity (nothing is written).
    """
    arrays = {f"param/{k}": np.asarray(v) for k, v in params.items()}
    for slot, values in optimizer_state["slots"].items():
        arrays.update({f"opt/{slot}/{k}": np.asarray(v) for k, v in values.items()})
    for name, a in arrays.items():
        if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            raise ValueError(f"{name} holds {int(a.size - np.isfinite(a).sum())} non-finite value(s) at epoch "
                             f"{epoch}; the checkpoint {path} is not written")
    meta = {"format": FORMAT, "version": VERSION, "config": config, "epoch": int(epoch),
            "rng_state": rng_state, "layer_dt": layer_dt or {}, "extra": extra or {},
            "optimizer": {k: optimizer_state[k] for k in ("kind", "hyperparameters", "step_count")},
            "optimizer_slots": sorted(optimizer_state["slots"])}
    meta["sha256"] = _digest(arrays, meta)
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return meta["sha256"]


def read_archive(path):
    """The arrays of the ``.npz`` archive at ``path`` (no pickles), each member's CRC-32 verified.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict of str -> ndarray
        Keyed by member name without ``.npy``.

    Raises
    ------
    CheckpointError
        When the file is missing or is not a readable, undamaged ``.npz`` archive.
    """
    arrays = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or info.filename[:-4] in arrays:
                    raise CheckpointError(f"checkpoint {path} is corrupt or not an .npz archive (member "
                                          f"{info.filename!r})")
                with archive.open(info) as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
                    if member.read(1):  # reading to the end also makes zipfile check the CRC-32
                        raise CheckpointError(f"checkpoint {path} is corrupt: member {info.filename!r} holds "
                                              "bytes after its array")
                arrays[info.filename[:-4]] = array
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except CheckpointError:
        raise
    except _ARCHIVE_ERRORS as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not an .npz archive "
                              f"({type(exc).__name__}: {exc})") from None
    return arrays


def load_checkpoint(path):
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        When the file is missing, unreadable, not a kinn_ref checkpoint, of another format version, or its
        digest does not match its contents.
    """
    arrays = read_archive(path)
    if "meta" not in arrays:
        raise CheckpointError(f"checkpoint {path} is not a kinn_ref checkpoint (no 'meta' entry)")
    meta = arrays.pop("meta")
    if meta.dtype.kind != "U" or meta.shape != ():
        raise CheckpointError(f"checkpoint {path} has a meta entry of {meta.dtype}{meta.shape}, expected a string")
    try:
        meta = json.loads(str(meta))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint {path} has an unreadable meta entry ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"checkpoint {path} is not a kinn_ref checkpoint (format {found!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {meta.get('version')!r}; this kinn_ref "
                              f"reads version {VERSION}")
    recorded = meta.pop("sha256", None)
    if recorded != _digest(arrays, meta):
        raise CheckpointError(f"checkpoint {path} is corrupt: its SHA-256 digest does not match its contents")
    meta["sha256"] = recorded
    try:
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        slots = {s: {} for s in meta["optimizer_slots"]}
        for k, v in arrays.items():
            if k.startswith("opt/"):
                _, slot, name = k.split("/", 2)
                slots[slot][name] = v
        optimizer = dict(meta["optimizer"], slots=slots)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is not a well-formed kinn_ref checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    missing = [key for key in ("config", "epoch", "rng_state", "layer_dt", "extra") if key not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a well-formed kinn_ref checkpoint (no {missing} in "
                              "its meta)")
    return Checkpoint(params=params, optimizer=optimizer, meta=meta)
