"""Generate (or copy) the golden suite into a directory (``kinn-ref golden export``)."""
import fnmatch
import logging
from pathlib import Path

import kinn_ref
from kinn_ref._checks import check_output_folder

from .golden_cases import golden_cases, case_inputs
from .golden_generate import DIGITS, STEP, _to_float, golden_values_exact
from .golden_json import case_document, document_bytes
from .golden_tolerance import case_condition
from .golden_store import (FORMATS, MANIFEST, GoldenIntegrityError, PACKAGED, atomic_write_bytes, case_arrays,
                           load_case, manifest_entry, npz_bytes, read_manifest, sha256, write_manifest)

logger = logging.getLogger(__name__)


def provenance():
    """How the stored values were produced (recorded in the manifest)."""
    import mpmath
    return {
        "generator": "analysis.golden_export (kinn-ref golden export)",
        "forward": f"analysis.discrete_map.evaluate: the discrete map written from docs/math.md with explicit "
                   f"coupling matrices, in mpmath at {DIGITS} significant digits on the exact input values; "
                   f"independent of the kinn_ref NumPy reference",
        "gradients": f"complex-step derivatives Im L(q + i h)/h of L = sum(dy * y), h = {STEP}, at {DIGITS} "
                     f"digits (truncation ~h^2, no cancellation)",
        "rounding": "each stored expected value rounded once, to nearest float64",
        "inputs": "random.Random(seed).uniform (Python standard library), cast to the case dtype; seed = the "
                  "first 8 bytes of SHA-256 of the case name (big-endian)",
        "mpmath_version": mpmath.__version__,
        "kinn_ref_version": kinn_ref.__version__,
    }


def case_file_bytes(case, form="npz", condition=None):
    """The case file of ``case`` in ``form`` (``"npz"`` or ``"json"``, :mod:`.golden_json`), generated in high
    precision; both forms hold the same values bit for bit. A JSON document holds the case's manifest record,
    whose tolerance comes from ``condition`` (computed when None)."""
    params, x, V0, dy = case_inputs(case)
    y_exact, grads_exact = golden_values_exact(case.spec, params, x, V0, dy)
    y, grads = _to_float(y_exact), {k: _to_float(v) for k, v in grads_exact.items()}
    arrays = case_arrays(params, x, V0, dy, y, grads)
    if form == "npz":
        return npz_bytes(arrays)
    exact = {"y": y_exact, **{f"grad.{k}": v for k, v in grads_exact.items()}}
    if condition is None:
        condition = case_condition_of(case)
    return document_bytes(case_document(manifest_entry(case, None, None, condition), arrays, exact))


def _check_form(form):
    if form not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {form!r}")
    return form


def case_condition_of(case):
    """The condition of ``case`` (:func:`analysis.golden_tolerance.case_condition`), which sets its tolerance."""
    return case_condition(case, *case_inputs(case))


def _generate(job):
    case, form = job
    condition = case_condition_of(case)
    return case, case_file_bytes(case, form, condition), condition


def selected_cases(select=None):
    """The golden cases whose names match the glob ``select`` (all when None); ValueError when none does."""
    cases = [c for c in golden_cases() if select is None or fnmatch.fnmatch(c.name, select)]
    if not cases:
        raise ValueError(f"no golden case matches {select!r}")
    return cases


def export_files(select=None, form="npz"):
    """The files :func:`export_suite` writes for ``select``: one case file per case, then the manifest."""
    return [c.name + FORMATS[_check_form(form)] for c in selected_cases(select)] + [MANIFEST]


def copy_files(source=None):
    """The files :func:`copy_suite` writes: those the manifest of ``source`` (default: the packaged suite)
    lists, then the manifest."""
    source = Path(source) if source is not None else PACKAGED
    return [entry["file"] for entry in read_manifest(source)["cases"]] + [MANIFEST]


def export_suite(directory, select=None, jobs=1, progress=None, engine=None, form="npz"):
    """Regenerate the golden cases (all, or those matching the glob ``select``) into ``directory``.

    Cases of an existing manifest there that are not regenerated are kept (their files are hash-checked).
    Every target is checked before the first case is generated: a folder where a case file or
    ``manifest.json`` should be, or a folder that cannot be written, is a ValueError and nothing is written.

    Parameters
    ----------
    directory : str or Path
    select : str, optional
        Glob over case names.
    jobs : int
        Worker processes.
    progress : callable, optional
        Called with each case name once its file is written.
    engine : kinn_ref.scaleout.engine.SweepEngine, optional
        Generate the cases as points of this engine (serial, local or existing Dask cluster) instead of
        ``jobs`` processes: each generated case is kept under ``directory/.golden.points`` until the
        manifest is written, so an interrupted export resumes without generating it again.
    form : {"npz", "json"}
        The case files' form: ``.npz``, or the language-neutral JSON documents of :mod:`.golden_json`.

    Returns
    -------
    dict
        The manifest written.
    """
    directory = Path(directory)
    cases = selected_cases(select)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs!r}")
    check_output_folder(directory, "directory", export_files(select, form))    # before any case is generated
    kept = {}
    if (directory / MANIFEST).is_file():
        fresh = {c.name for c in cases}
        existing = read_manifest(directory, packaged_digest=False)   # to be rewritten, kept cases re-hashed
        if existing.get("format", "npz") != form:
            raise ValueError(f"directory {directory} holds a suite of format {existing.get('format', 'npz')!r}; "
                             f"export the {form!r} form into another folder")
        for entry in existing["cases"]:
            if entry["name"] not in fresh:
                load_case(directory, entry)
                kept[entry["name"]] = entry
    entries = dict(kept)

    def store(case, data, condition=None):
        file_name = case.name + FORMATS[form]
        atomic_write_bytes(directory / file_name, data)
        condition = case_condition_of(case) if condition is None else condition
        entries[case.name] = manifest_entry(case, file_name, sha256(data), condition)
        logger.info("golden case %s written", case.name)
        if progress is not None:
            progress(case.name)

    if engine is not None:
        from kinn_ref.scaleout.golden_sweep import generate_cases, store_folder
        from kinn_ref.scaleout.engine import PointStore
        by_name, written = {c.name: c for c in cases}, set()

        def on_case(name, data):
            store(by_name[name], data)
            written.add(name)

        generated = generate_cases(directory, cases, engine, on_case, form)
        for case in cases:
            if case.name not in written:      # generated by an interrupted export, kept in its store
                store(case, generated[case.name])
        manifest = write_manifest(directory, list(entries.values()), provenance(), form)
        PointStore(store_folder(directory)).clear()
        return manifest
    if jobs == 1:
        for case in cases:
            store(*_generate((case, form)))
    else:
        import multiprocessing
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            for case, data, condition in pool.imap(_generate, [(case, form) for case in cases]):
                store(case, data, condition)
    return write_manifest(directory, list(entries.values()), provenance(), form)


def copy_suite(directory, source=None):
    """Copy the packaged suite (or the one in ``source``) to ``directory``, checking every hash.

    Every target is checked before the first file is copied: a folder where a case file or
    ``manifest.json`` should be, or a folder that cannot be written, is a ValueError and nothing is copied.
    """
    source = Path(source) if source is not None else PACKAGED
    directory = Path(directory)
    if directory.resolve() == source.resolve():
        raise ValueError(f"directory must differ from the source suite {source}")
    manifest = read_manifest(source)
    check_output_folder(directory, "directory", copy_files(source))
    for entry in manifest["cases"]:
        load_case(source, entry)
        atomic_write_bytes(directory / entry["file"], (source / entry["file"]).read_bytes())
    atomic_write_bytes(directory / MANIFEST, (source / MANIFEST).read_bytes())
    if read_manifest(directory) != manifest:
        raise GoldenIntegrityError(f"copy of {source} to {directory} differs from its source")
    return manifest


def write_schemas(directory):
    """Write the JSON Schemas of the manifest and of a case document into ``directory``."""
    import json
    from .golden_json import SCHEMA_FILES
    for name, schema in SCHEMA_FILES.items():
        atomic_write_bytes(Path(directory) / name, (json.dumps(schema(), indent=1, sort_keys=True) + "\n").encode())
