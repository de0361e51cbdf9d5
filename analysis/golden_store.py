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

from kinn_ref.tolerances import TOLERANCES
from kinn_ref.training.atomic import atomic_write

from .golden_cases import SCHEMA_VERSION, SUITE_VERSION, TIERS, spec_from_dict, spec_to_dict

MANIFEST = "manifest.json"
PACKAGED = Path(__file__).resolve().parent / "golden"
PACKAGED_JSON = PACKAGED / "json"
PACKAGED_FOLDERS = {"npz": PACKAGED, "json": PACKAGED_JSON}
#: File suffix of the case files of each form of the suite.
FORMATS = {"npz": ".npz", "json": ".json"}
#: SHA-256 of the packaged suite's manifests (:func:`suite_digest`), checked by every reader of the packaged
#: suite: an edited manifest (a tolerance, a removed case, a file's hash) is refused.
PACKAGED_DIGESTS = {"npz": "44c0042cea5184624feab54ab217c4b7c65260f43cce277899a09e08de3388f9",
                   "json": "0c67e632f34253d96292643bba8a01dad464853f5d4b8b90c9a7631779e21f0a"}
#: Largest tolerance a manifest may state.
MAX_TOLERANCE = 0.01

# TOLERANCES (kinn_ref.tolerances): the norm-wise relative error bounds of CPU and GPU backends, by computation
# dtype; a case's own tolerance follows its condition (analysis.golden_tolerance) and is never below them


class GoldenIntegrityError(ValueError):
    """A golden file is missing, altered (hash or digest mismatch), malformed, or of an unknown schema."""


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


def write_manifest(directory, entries, provenance, form="npz"):
    """Write ``manifest.json`` for ``entries`` (sorted by name) atomically; ``form`` is that of the case files."""
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "suite": "kinn_ref golden reference",
        "suite_version": SUITE_VERSION,
        "tiers": list(TIERS),
        **({} if form == "npz" else {"format": form}),
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


def suite_digest(directory=None):
    """SHA-256 of the suite's ``manifest.json`` bytes. The manifest holds every case file's SHA-256, which every
    reader checks, so this one digest covers the manifest and every file."""
    directory = Path(directory) if directory is not None else PACKAGED
    return sha256((directory / MANIFEST).read_bytes())


def _fail(where, what):
    raise GoldenIntegrityError(f"{where}: {what}")


def validate_manifest(manifest, where):
    """Check the structure of a manifest (every field a reader relies on); GoldenIntegrityError naming what
    is wrong. Tolerances must be numbers in (0, 0.01]: looser bounds would pass wrong implementations."""
    if not isinstance(manifest, dict):
        _fail(where, f"the manifest must be a JSON object, got {type(manifest).__name__}")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        _fail(where, f"schema_version must be {SCHEMA_VERSION}, got {manifest.get('schema_version')!r}")
    if manifest.get("format", "npz") not in FORMATS:
        _fail(where, f"format must be one of {list(FORMATS)}, got {manifest.get('format')!r}")
    cases = manifest.get("cases")
    if not isinstance(cases, list) or not cases:
        _fail(where, "'cases' must be a non-empty list of case records")
    suffix = FORMATS[manifest.get("format", "npz")]
    names = set()
    for i, entry in enumerate(cases):
        at = f"cases[{i}]"
        if not isinstance(entry, dict):
            _fail(where, f"{at} must be an object")
        for key, kind in (("name", str), ("file", str), ("sha256", str), ("layer", str), ("spec", dict),
                          ("dtype", str), ("batch", int), ("input", str), ("has_V0", bool), ("tolerance", dict)):
            if not isinstance(entry.get(key), kind) or (kind is int and isinstance(entry.get(key), bool)):
                _fail(where, f"{at}: {key!r} must be a {kind.__name__}, got {entry.get(key)!r}")
        name, at = entry["name"], f"case {entry['name']!r}"
        if name in names:
            _fail(where, f"{at} is listed twice")
        names.add(name)
        file_name = entry["file"]
        if Path(file_name).name != file_name or file_name in (".", "..") or "\\" in file_name \
                or not file_name.endswith(suffix):
            _fail(where, f"{at}: file must be a plain {suffix} file name inside the suite folder, got {file_name!r}")
        if len(entry["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in entry["sha256"]):
            _fail(where, f"{at}: sha256 must be 64 lowercase hexadecimal digits")
        if entry["layer"] not in ("KINNLayer", "KINNLayers") or entry["dtype"] not in TOLERANCES \
                or entry["input"] not in ("static", "sequence") or entry["batch"] < 1:
            _fail(where, f"{at}: layer, dtype, input or batch out of range ({entry['layer']!r}, {entry['dtype']!r}, "
                         f"{entry['input']!r}, {entry['batch']!r})")
        for side in ("cpu", "gpu"):
            tol = entry["tolerance"].get(side)
            if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol <= MAX_TOLERANCE:
                _fail(where, f"{at}: tolerance.{side} must be a number in (0, {MAX_TOLERANCE}], got {tol!r}")
        try:
            spec_from_dict(entry["spec"])
        except (TypeError, ValueError) as exc:
            _fail(where, f"{at}: spec is not a valid LayerSpec ({exc})")
    return manifest


def read_manifest(directory=None, packaged_digest=True):
    """The manifest of the suite in ``directory`` (the packaged suite by default), checked: its structure
    (:func:`validate_manifest`) and, for a packaged suite, its digest against :data:`PACKAGED_DIGESTS`
    (``packaged_digest=False`` leaves that out: an export regenerating the packaged suite in place)."""
    directory = Path(directory) if directory is not None else PACKAGED
    path = directory / MANIFEST
    if not path.is_file():
        raise GoldenIntegrityError(f"no {MANIFEST} in {directory}; export a suite with `kinn-ref golden export`")
    data = path.read_bytes()
    for form, folder in PACKAGED_FOLDERS.items():
        if packaged_digest and directory.resolve() == folder.resolve() and sha256(data) != PACKAGED_DIGESTS[form]:
            raise GoldenIntegrityError(f"{path}: the packaged suite's manifest differs from the one this kinn_ref "
                                       f"release was built with (SHA-256 {sha256(data)}, expected "
                                       f"{PACKAGED_DIGESTS[form]}); reinstall kinn_ref")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GoldenIntegrityError(f"{path}: not a JSON document ({exc})") from None
    return validate_manifest(manifest, str(path))


def expected_arrays(entry, spec):
    """``{key: (shape, dtype)}`` of every array a case file must hold, and nothing else (docs/golden.md)."""
    dtype, batch, K = entry["dtype"], entry["batch"], spec.order
    inputs = {f"param.{k}": shape for k, shape in spec.param_shapes().items()}
    inputs["x"] = spec.input_shape(batch, spec.n_steps if entry["input"] == "sequence" else None)
    if entry["has_V0"]:
        inputs["V0"] = (batch, K, spec.total_nodes)
    out_shape = (batch, spec.n_steps, spec.readout_width) if spec.return_sequences else (batch, spec.readout_width)
    wanted = {k: (tuple(v), dtype) for k, v in inputs.items()}
    wanted["dy"] = (out_shape, dtype)
    wanted["y"] = (out_shape, "float64")
    for k, shape in inputs.items():
        wanted["grad." + (k[6:] if k.startswith("param.") else k)] = (tuple(shape), "float64")
    return wanted


def check_case_arrays(entry, spec, arrays, where):
    """Every array the case needs is there with its shape and dtype, finite, and nothing else is."""
    wanted = expected_arrays(entry, spec)
    missing, extra = sorted(set(wanted) - set(arrays)), sorted(set(arrays) - set(wanted))
    if missing or extra:
        _fail(where, f"arrays missing {missing}, unexpected {extra}")
    for key, (shape, dtype) in wanted.items():
        a = arrays[key]
        if a.shape != shape or a.dtype != np.dtype(dtype):
            _fail(where, f"array {key!r} is {a.dtype}{a.shape}, expected {dtype}{shape}")
        if not np.isfinite(a).all():
            _fail(where, f"array {key!r} holds non-finite values")


def _read_arrays(data, path):
    if path.suffix == ".json":
        from .golden_json import arrays_from_document
        try:
            return arrays_from_document(data, str(path))[1]
        except ValueError as exc:
            raise GoldenIntegrityError(str(exc)) from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise GoldenIntegrityError(f"{path}: not a readable .npz ({exc})") from None


def load_case(directory, entry):
    """Read and hash-check the file of manifest record ``entry`` (validated by :func:`validate_manifest`), check
    its arrays (:func:`check_case_arrays`); return a :class:`GoldenData`."""
    directory = Path(directory)
    path = directory / entry["file"]
    where = f"golden case {entry['name']!r}"
    if path.resolve().parent != directory.resolve():
        _fail(where, f"file {entry['file']!r} lies outside the suite folder {directory}")
    if not path.is_file():
        _fail(where, f"file {path} is missing")
    data = path.read_bytes()
    if sha256(data) != entry["sha256"]:
        _fail(where, f"{path} does not match the SHA-256 of the manifest (the file was altered or belongs to "
                     "another export)")
    arrays = _read_arrays(data, path)
    spec = spec_from_dict(entry["spec"])
    check_case_arrays(entry, spec, arrays, f"{where} ({path.name})")
    return GoldenData(entry=entry, spec=spec,
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
