"""Storage of the golden suite: one ``.npz`` per case and ``manifest.json`` (docs/golden.md).

Files are written deterministically (uncompressed zip members in sorted order with a fixed timestamp) and
atomically (temporary file + rename), so that a regenerated case reproduces its stored bytes and its
SHA-256. :func:`load_suite` checks the schema version and every file's hash before any value is used.
"""
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kinn_ref.training.atomic import atomic_write

from .golden_cases import SCHEMA_VERSION, SUITE_VERSION, TIERS, spec_from_dict, spec_to_dict

MANIFEST = "manifest.json"
PACKAGED = Path(__file__).resolve().parent / "golden"

# norm-wise relative error bounds (SPEC section 3): CPU and GPU backends, by computation dtype; a case's own
# tolerance follows its condition (analysis.golden_tolerance) and is never below the float64 ones
TOLERANCES = {"float64": {"cpu": 1e-12, "gpu": 1e-11}, "float32": {"cpu": 1e-5, "gpu": 1e-5}}


class GoldenIntegrityError(ValueError):
    """A golden file is missing, altered (hash mismatch) or of an unknown schema."""


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then a rename)."""
    atomic_write(path, lambda f: f.write(data))


def npz_bytes(arrays):
    """A deterministic ``.npz`` (readable by ``numpy.load``) of ``arrays``, as bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def case_arrays(params, x, V0, dy, y, grads):
    """The arrays of one case file, by key: ``param.<name>``, ``x``, ``V0``, ``dy``, ``y``, ``grad.<name>``."""
    arrays = {f"param.{k}": v for k, v in params.items()}
    arrays.update(x=x, dy=dy, y=np.asarray(y, np.float64))
    if V0 is not None:
        arrays["V0"] = V0
    arrays.update({f"grad.{k}": np.asarray(v, np.float64) for k, v in grads.items()})
    return arrays


def manifest_entry(case, file_name, digest, condition):
    """The manifest record of ``case`` (a :class:`~analysis.golden_cases.GoldenCase`) whose condition is
    ``condition`` (:func:`analysis.golden_tolerance.case_condition`)."""
    from .golden_tolerance import tolerance
    return {"name": case.name, "file": file_name, "sha256": digest, "tier": case.tier, "layer": case.layer,
            "spec": spec_to_dict(case.spec), "dtype": case.dtype, "batch": case.batch,
            "input": "sequence" if case.sequence else "static", "has_V0": case.with_V0,
            "condition": float(f"{condition:.2g}"), "tolerance": tolerance(case.dtype, condition),
            "description": case.description}


def write_manifest(directory, entries, provenance):
    """Write ``manifest.json`` for ``entries`` (sorted by name) atomically."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "suite": "kinn_ref golden reference",
        "suite_version": SUITE_VERSION,
        "tiers": list(TIERS),
        "provenance": provenance,
        "comparison": "norm-wise relative error ||actual - expected|| / ||expected|| per array "
                      "(||actual|| when expected is all zeros), against tolerance.cpu or tolerance.gpu; "
                      "digits of agreement -log10(relative error), 17 at most",
        "tolerance": "max(floor, 32 * u * condition) rounded up to 1, 2 or 5 times a power of ten; u the unit "
                     "roundoff of the case's dtype, floor 1e-12 (cpu) / 1e-11 (gpu) for float64 and none for "
                     "float32; condition measured by perturbation (analysis.golden_tolerance)",
        "arrays": {"param.<name>": "raw parameter (the case's dtype)", "x": "input", "V0": "initial state "
                   "(present when has_V0)", "dy": "cotangent of the output", "y": "expected output (float64)",
                   "grad.<name>": "expected dL/d<name> for L = sum(dy * y), for every parameter, x and V0 "
                   "(float64)"},
        "cases": sorted(entries, key=lambda e: e["name"]),
    }
    text = json.dumps(manifest, indent=1, sort_keys=False) + "\n"
    atomic_write_bytes(Path(directory) / MANIFEST, text.encode())
    return manifest


@dataclass
class GoldenData:
    """One loaded case.

    Attributes
    ----------
    entry : dict
        Its manifest record.
    spec : kinn_ref.LayerSpec
    params : dict of ndarray
    x, dy, y : ndarray
    V0 : ndarray or None
    grads : dict of ndarray
    """

    entry: dict
    spec: object
    params: dict
    x: np.ndarray
    V0: np.ndarray
    dy: np.ndarray
    y: np.ndarray
    grads: dict

    @property
    def name(self):
        return self.entry["name"]


def read_manifest(directory=None):
    """The manifest of the suite in ``directory`` (the packaged suite by default), schema checked."""
    directory = Path(directory) if directory is not None else PACKAGED
    path = directory / MANIFEST
    if not path.is_file():
        raise GoldenIntegrityError(f"no {MANIFEST} in {directory}; export a suite with `kinn-ref golden export`")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise GoldenIntegrityError(f"{path}: schema_version must be {SCHEMA_VERSION}, got "
                                   f"{manifest.get('schema_version')!r}")
    return manifest


def load_case(directory, entry):
    """Read and hash-check the file of manifest record ``entry``; return a :class:`GoldenData`."""
    path = Path(directory) / entry["file"]
    if not path.is_file():
        raise GoldenIntegrityError(f"golden case {entry['name']!r}: file {path} is missing")
    data = path.read_bytes()
    if sha256(data) != entry["sha256"]:
        raise GoldenIntegrityError(f"golden case {entry['name']!r}: {path} does not match the SHA-256 of the "
                                   f"manifest (the file was altered or belongs to another export)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return GoldenData(entry=entry, spec=spec_from_dict(entry["spec"]),
                      params={k[6:]: v for k, v in arrays.items() if k.startswith("param.")},
                      x=arrays["x"], V0=arrays.get("V0"), dy=arrays["dy"], y=arrays["y"],
                      grads={k[5:]: v for k, v in arrays.items() if k.startswith("grad.")})


def load_suite(directory=None, select=None, tiers=None):
    """Every case of the suite (or those whose name matches the glob ``select`` and whose tier is in
    ``tiers``), hash-checked.

    Returns
    -------
    manifest : dict
    cases : list of GoldenData
    """
    import fnmatch
    directory = Path(directory) if directory is not None else PACKAGED
    manifest = read_manifest(directory)
    if tiers is not None:
        unknown = sorted(set(tiers) - set(TIERS))
        if unknown:
            raise ValueError(f"tiers must be among {list(TIERS)}, got {unknown}")
    entries = [e for e in manifest["cases"] if (select is None or fnmatch.fnmatch(e["name"], select))
               and (tiers is None or e.get("tier", "basic") in tiers)]
    if not entries:
        raise ValueError(f"no golden case matches {select!r}" + ("" if tiers is None else f" in tiers {list(tiers)}")
                         + f" in {directory}")
    return manifest, [load_case(directory, e) for e in entries]
