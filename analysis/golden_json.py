"""The language-neutral form of the golden suite: one JSON document per case, a JSON manifest, JSON Schemas.

A reader in any language needs a JSON parser and nothing else (docs/golden.md, "The JSON form"):

- every array is ``{"dtype", "shape", "hex", "values"}``: its entries in row-major (C) order, each as a
  C99 hexadecimal float string (``"0x1.999999999999ap-4"``, exact: ``strtod``, Julia's ``parse``, Python's
  ``float.fromhex``) and as a JSON number written with the shortest decimal that reads back to the same
  float64 (17 significant digits at most; exact for any correctly rounding parser). float32 arrays hold
  float32 values, written exactly in the same two ways;
- every expected array (``y``, ``grad.<name>``) also has ``"decimal"``: each value at :data:`DECIMAL_DIGITS`
  significant digits from the high-precision computation, before its one rounding to float64;
- the case's full record (spec, dtype, batch, tolerances, ...) is in the document itself.

The ``.npz`` and JSON forms hold the same values bit for bit (tested).
"""
import json

import numpy as np

from .golden_cases import SCHEMA_VERSION, TIERS

#: Significant digits of the high-precision decimals of the expected values.
DECIMAL_DIGITS = 30

CASE_FORMAT = "kinn_ref golden case"
FLOAT_DTYPES = ("float32", "float64")


def array_record(a, exact=None):
    """The JSON record of the float array ``a`` (``exact``: its high-precision values, same shape)."""
    a = np.ascontiguousarray(a)
    if a.dtype.name not in FLOAT_DTYPES:
        raise ValueError(f"golden arrays are float32 or float64, got {a.dtype}")
    flat = [float(v) for v in a.reshape(-1)]
    record = {"dtype": a.dtype.name, "shape": list(a.shape), "hex": [v.hex() for v in flat], "values": flat}
    if exact is not None:
        import mpmath
        record["decimal"] = [mpmath.nstr(v, DECIMAL_DIGITS, strip_zeros=False, min_fixed=-4, max_fixed=6)
                             for v in np.asarray(exact, dtype=object).reshape(-1)]
    return record


def array_from_record(record, where="array"):
    """The ndarray of a JSON array record, from its ``hex`` strings (exact); ValueError naming ``where``."""
    try:
        dtype, shape, hexes = np.dtype(record["dtype"]), tuple(int(n) for n in record["shape"]), record["hex"]
        if dtype.name not in FLOAT_DTYPES or any(n < 0 for n in shape):
            raise ValueError(f"dtype {dtype} or shape {shape} not allowed")
        values = np.array([float.fromhex(h) for h in hexes], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: not a golden array record ({type(exc).__name__}: {exc})") from None
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{where}: {values.size} hex values for shape {shape}")
    out = values.astype(dtype)
    if dtype == np.float32 and not np.array_equal(out.astype(np.float64), values):
        raise ValueError(f"{where}: float32 array holds values that are not float32 numbers")
    return out.reshape(shape)


def case_document(record, arrays, exact=None):
    """The JSON document of one case: its manifest ``record`` (without ``file`` and ``sha256``) and arrays.

    Parameters
    ----------
    record : dict
        The case's manifest entry.
    arrays : dict of ndarray
        The arrays of its ``.npz`` (:func:`~analysis.golden_store.case_arrays`).
    exact : dict of ndarray, optional
        High-precision values of the expected arrays, by key (``y``, ``grad.<name>``).
    """
    exact = exact or {}
    return {"format": CASE_FORMAT, "schema_version": SCHEMA_VERSION,
            "case": {k: v for k, v in record.items() if k not in ("file", "sha256")},
            "arrays": {k: array_record(arrays[k], exact.get(k)) for k in sorted(arrays)}}


def document_bytes(document):
    """Deterministic UTF-8 bytes of a JSON document (sorted keys, one space of indent, final newline)."""
    return (json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def arrays_from_document(data, where):
    """``(case record, arrays)`` of a case document's bytes; ValueError naming ``where`` when malformed."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where}: not a JSON document ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != CASE_FORMAT:
        raise ValueError(f"{where}: not a golden case document (format must be {CASE_FORMAT!r})")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{where}: schema_version must be {SCHEMA_VERSION}, got {document.get('schema_version')!r}")
    records = document.get("arrays")
    if not isinstance(records, dict) or not isinstance(document.get("case"), dict):
        raise ValueError(f"{where}: 'case' and 'arrays' must be objects")
    return document["case"], {k: array_from_record(r, f"{where}: array {k!r}") for k, r in records.items()}


# --------------------------------------------------------------------------- JSON Schemas
_NUMBER_ARRAY = {"type": "array", "items": {"type": "number"}}


def case_schema():
    """The JSON Schema (draft 2020-12) of a case document."""
    array = {"type": "object", "required": ["dtype", "shape", "hex", "values"], "additionalProperties": False,
             "properties": {
                 "dtype": {"enum": list(FLOAT_DTYPES)},
                 "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                 "hex": {"type": "array", "items": {
                     "type": "string", "pattern": r"^-?0x[01]\.[0-9a-f]+p[+-][0-9]+$"}},
                 "values": _NUMBER_ARRAY,
                 "decimal": {"type": "array", "items": {"type": "string"}}}}
    expected = dict(array, required=array["required"] + ["decimal"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kinn-ref.example/golden/case.schema.json",
        "title": "kinn_ref golden case",
        "type": "object", "required": ["format", "schema_version", "case", "arrays"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": CASE_FORMAT},
            "schema_version": {"const": SCHEMA_VERSION},
            "case": {"$ref": "manifest.schema.json#/$defs/case"},
            "arrays": {"type": "object", "required": ["x", "dy", "y"],
                       "properties": {"y": expected},
                       "patternProperties": {r"^grad\.": expected, r"^(param\.[A-Za-z_]+|x|V0|dy)$": array},
                       "additionalProperties": False}}}


def manifest_schema():
    """The JSON Schema (draft 2020-12) of ``manifest.json`` (both forms)."""
    spec = {"type": "object", "required": ["in_features", "n_nodes", "order", "coupling", "integrator", "dt",
                                           "n_steps", "readout", "param", "c_min", "return_sequences",
                                           "grid_shape", "boundary"],
            "properties": {"in_features": {"type": "integer", "minimum": 1}, "n_nodes": {"type": "integer", "minimum": 1},
                           "order": {"type": "integer", "minimum": 1}, "coupling": {"type": "string"},
                           "integrator": {"type": "string"}, "dt": {"type": "number", "exclusiveMinimum": 0},
                           "n_steps": {"type": "integer", "minimum": 1}, "readout": {"type": "string"},
                           "param": {"type": "string"}, "c_min": {"type": "number"},
                           "return_sequences": {"type": "boolean"},
                           "grid_shape": {"anyOf": [{"type": "null"},
                                                    {"type": "array", "items": {"type": "integer", "minimum": 1}}]},
                           "boundary": {"type": "string"}}}
    tolerance = {"type": "number", "exclusiveMinimum": 0, "maximum": 0.01}
    case = {"type": "object",
            "required": ["name", "layer", "spec", "dtype", "batch", "input", "has_V0", "tolerance", "description"],
            "properties": {"name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*$"},
                           "layer": {"enum": ["KINNLayer", "KINNLayers"]}, "spec": spec,
                           "dtype": {"enum": list(FLOAT_DTYPES)}, "batch": {"type": "integer", "minimum": 1},
                           "input": {"enum": ["static", "sequence"]}, "has_V0": {"type": "boolean"},
                           "tolerance": {"type": "object", "required": ["cpu", "gpu"],
                                         "properties": {"cpu": tolerance, "gpu": tolerance}},
                           "description": {"type": "string"},
                           "tier": {"enum": list(TIERS)}, "condition": {"type": "number", "minimum": 0}}}
    entry = {"allOf": [{"$ref": "#/$defs/case"},
                       {"type": "object", "required": ["file", "sha256"],
                        "properties": {"file": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*\.(npz|json)$"},
                                       "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kinn-ref.example/golden/manifest.schema.json",
        "title": "kinn_ref golden suite manifest",
        "type": "object", "required": ["schema_version", "suite", "provenance", "comparison", "arrays", "cases"],
        "properties": {"schema_version": {"const": SCHEMA_VERSION}, "suite": {"type": "string"},
                       "format": {"enum": ["npz", "json"]}, "provenance": {"type": "object"},
                       "suite_version": {"type": "string", "pattern": r"^[0-9]{4}\.[0-9]{1,2}\.[0-9]+$"},
                       "tiers": {"type": "array", "items": {"enum": list(TIERS)}},
                       "comparison": {"type": "string"}, "arrays": {"type": "object"},
                       "cases": {"type": "array", "items": entry}},
        "$defs": {"case": case}}


SCHEMA_FILES = {"manifest.schema.json": manifest_schema, "case.schema.json": case_schema}
