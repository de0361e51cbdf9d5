"""Golden-case generation as a sweep: one point per case, its ``.npz`` bytes generated in high precision
(:func:`kinn_ref.analysis.golden_export.case_file_bytes`) wherever the engine runs it; this process writes each
file and, at the end, the manifest, so the suite is byte for byte the serial export's."""
import base64
import dataclasses

from .engine import Point, PointStore, digest


def store_folder(directory):
    """Where generated cases wait until the manifest is written."""
    return directory / ".golden.points"


def case_bytes_b64(case, form="npz"):
    """The case file's bytes in ``form`` (``npz`` or ``json``), base64 (a JSON-storable point result)."""
    from ..analysis.golden_export import case_file_bytes
    return base64.b64encode(case_file_bytes(case, form)).decode("ascii")


def case_points(cases, form="npz"):
    """One :class:`Point` per case; its fingerprint covers the case, the form and the generator's versions."""
    from ..analysis.golden_export import provenance
    version = provenance()
    return [Point(case.name, case_bytes_b64, (case, form), digest(repr(dataclasses.asdict(case)), version, form))
            for case in cases]


def generate_cases(directory, cases, engine, on_case=None, form="npz"):
    """Generate ``cases`` on ``engine``, persisted per case under :func:`store_folder` (``directory``);
    returns ``{case name: file bytes}``. ``on_case(name, data)`` is called for each newly generated case."""
    store = PointStore(store_folder(directory))
    callback = None if on_case is None else (lambda key, data: on_case(key, base64.b64decode(data)))
    results = engine.run(case_points(cases, form), store, label="golden cases", on_result=callback)
    return {name: base64.b64decode(data) for name, data in results.items()}
