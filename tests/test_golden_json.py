"""The golden suite's language-neutral JSON form, its schemas, and the integrity checks every reader makes."""
import json
import shutil

import numpy as np
import pytest

from kinn_ref.analysis import golden_store
from kinn_ref.analysis.golden_cases import golden_cases
from kinn_ref.analysis.golden_export import case_file_bytes, export_suite
from kinn_ref.analysis.golden_json import SCHEMA_FILES, array_from_record
from kinn_ref.analysis.golden_store import (PACKAGED, PACKAGED_DIGESTS, PACKAGED_JSON, GoldenIntegrityError,
                                            load_suite, npz_bytes, read_manifest, sha256, suite_digest)
from kinn_ref.cli import main


@pytest.fixture(scope="module")
def both_forms():
    return load_suite(PACKAGED)[1], load_suite(PACKAGED_JSON)[1]


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_json_and_npz_forms_hold_the_same_values_bit_for_bit(both_forms):
    npz, js = both_forms
    assert [c.name for c in npz] == [c.name for c in js] and len(npz) == len(read_manifest()["cases"])
    for a, b in zip(npz, js):
        strip = ("file", "sha256")
        assert {k: v for k, v in a.entry.items() if k not in strip} == {k: v for k, v in b.entry.items() if k not in strip}
        for attr in ("x", "dy", "y"):
            assert _same(getattr(a, attr), getattr(b, attr)), (a.name, attr)
        assert (a.V0 is None) == (b.V0 is None) and (a.V0 is None or _same(a.V0, b.V0))
        for group in ("params", "grads"):
            one, two = getattr(a, group), getattr(b, group)
            assert set(one) == set(two) and all(_same(one[k], two[k]) for k in one), (a.name, group)


def test_each_expected_value_is_its_high_precision_decimal_rounded_once():
    import mpmath
    for path in sorted(PACKAGED_JSON.glob("*-*.json")):
        document = json.loads(path.read_text())
        for key, record in document["arrays"].items():
            expected = key == "y" or key.startswith("grad.")
            assert ("decimal" in record) == expected, (path.name, key)
            assert [float(v).hex() for v in record["values"]] == record["hex"]   # the two exact forms agree
            if expected:
                with mpmath.workdps(40):
                    rounded = [float(mpmath.mpf(d)) for d in record["decimal"]]
                assert [v.hex() for v in rounded] == record["hex"], (path.name, key)


def test_packaged_json_documents_follow_their_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource
    schemas = {name: make() for name, make in SCHEMA_FILES.items()}
    for name, schema in schemas.items():       # the packaged schema files are the current ones
        assert json.loads((PACKAGED_JSON / name).read_text()) == schema
        jsonschema.Draft202012Validator.check_schema(schema)
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    manifest_v = jsonschema.Draft202012Validator(schemas["manifest.schema.json"], registry=registry)
    case_v = jsonschema.Draft202012Validator(schemas["case.schema.json"], registry=registry)
    for folder in (PACKAGED, PACKAGED_JSON):
        manifest_v.validate(json.loads((folder / "manifest.json").read_text()))
    for path in sorted(PACKAGED_JSON.glob("*-*.json")):
        case_v.validate(json.loads(path.read_text()))
    broken = json.loads(next(PACKAGED_JSON.glob("seed-*.json")).read_text())
    del broken["arrays"]["y"]["decimal"]
    with pytest.raises(jsonschema.ValidationError):
        case_v.validate(broken)


@pytest.mark.parametrize("name", ["seed-KINNLayers", "float32-dense-euler-cells"])
def test_json_regeneration_reproduces_the_packaged_bytes(name):
    case = next(c for c in golden_cases() if c.name == name)
    entry = next(e for e in read_manifest(PACKAGED_JSON)["cases"] if e["name"] == name)
    assert sha256(case_file_bytes(case, "json")) == entry["sha256"]


def test_cli_json_export_copy_and_verify(tmp_path, capsys):
    assert main(["golden", "export", str(tmp_path / "gen"), "--format", "json", "--cases", "seed-*"]) == 0
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["format"] == "json" and [e["file"] for e in manifest["cases"]] == ["seed-KINNLayers.json"]
    assert sorted(p.name for p in (tmp_path / "gen").glob("*.schema.json")) == sorted(SCHEMA_FILES)
    assert main(["golden", "export", str(tmp_path / "copy"), "--copy", "--format", "json"]) == 0
    assert suite_digest(tmp_path / "copy") == PACKAGED_DIGESTS["json"]
    capsys.readouterr()
    assert main(["golden", "verify", "--backend", "numpy", "--format", "json", "--cases", "float32-*"]) == 0
    assert "0 mismatch" in capsys.readouterr().out
    assert main(["golden", "verify", "--backend", "numpy", "--dir", str(tmp_path / "gen")]) == 0
    with pytest.raises(ValueError, match="holds a suite of format 'json'"):
        export_suite(tmp_path / "gen", "seed-*")


def test_packaged_digests_are_those_of_the_packaged_manifests():
    for form, folder in golden_store.PACKAGED_FOLDERS.items():
        assert suite_digest(folder) == PACKAGED_DIGESTS[form], f"update PACKAGED_DIGESTS[{form!r}]"


# --------------------------------------------------------------------------- tampering
def _copy(tmp_path, folder=PACKAGED):
    target = tmp_path / "suite"
    shutil.copytree(folder, target)
    return target


def _edit(suite, change):
    manifest = json.loads((suite / "manifest.json").read_text())
    change(manifest)
    (suite / "manifest.json").write_text(json.dumps(manifest))


def test_an_edited_packaged_manifest_is_refused(tmp_path, monkeypatch, capsys):
    suite = _copy(tmp_path)
    monkeypatch.setitem(golden_store.PACKAGED_FOLDERS, "npz", suite)
    read_manifest(suite)                                   # the copy itself is the packaged suite
    _edit(suite, lambda m: m["cases"].pop(0))              # a case removed: 43 would pass
    with pytest.raises(GoldenIntegrityError, match="packaged suite's manifest differs"):
        read_manifest(suite)
    assert main(["golden", "verify", "--backend", "numpy", "--dir", str(suite)]) == 2
    assert "packaged suite's manifest differs" in capsys.readouterr().err


@pytest.mark.parametrize("change,match", [
    (lambda m: m["cases"][0]["tolerance"].update(cpu=1e300), r"tolerance.cpu must be a number in \(0, 0.01\]"),
    (lambda m: m["cases"][0]["tolerance"].update(gpu="1e-12"), "tolerance.gpu must be a number"),
    (lambda m: m["cases"][0].update(file="../other/x.npz"), "plain .npz file name inside the suite folder"),
    (lambda m: m["cases"][0].update(file="/etc/passwd"), "plain .npz file name"),
    (lambda m: m["cases"][1].update(name=m["cases"][0]["name"]), "listed twice"),
    (lambda m: m["cases"][0].pop("spec"), "'spec' must be a dict"),
    (lambda m: m["cases"][0]["spec"].update(n_nodes=0), "spec is not a valid LayerSpec"),
    (lambda m: m["cases"][0]["spec"].update(colour="red"), "spec is not a valid LayerSpec"),
    (lambda m: m["cases"][0].update(batch=True), "'batch' must be a int"),
    (lambda m: m.update(cases={}), "'cases' must be a non-empty list"),
    (lambda m: m.update(format="xml"), "format must be one of"),
])
def test_a_malformed_manifest_is_an_integrity_error_naming_what_is_wrong(tmp_path, capsys, change, match):
    suite = _copy(tmp_path)
    _edit(suite, change)
    with pytest.raises(GoldenIntegrityError, match=match):
        load_suite(suite)
    assert main(["golden", "verify", "--backend", "numpy", "--dir", str(suite)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_manifest_that_is_not_json_is_an_integrity_error(tmp_path):
    suite = _copy(tmp_path)
    (suite / "manifest.json").write_text('{"schema_version": 1, "cases": [')
    with pytest.raises(GoldenIntegrityError, match="not a JSON document"):
        read_manifest(suite)


def _rewrite_case(suite, index, change):
    """Rewrite case ``index``'s file with ``change(arrays)`` and its hash in the manifest (a careful forger)."""
    manifest = json.loads((suite / "manifest.json").read_text())
    entry = manifest["cases"][index]
    with np.load(suite / entry["file"]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    data = npz_bytes(arrays)
    (suite / entry["file"]).write_bytes(data)
    entry["sha256"] = sha256(data)
    (suite / "manifest.json").write_text(json.dumps(manifest))
    return entry["name"]


@pytest.mark.parametrize("change,match", [
    (lambda a: a.pop("grad.W"), r"arrays missing \['grad.W'\]"),
    (lambda a: a.pop("y"), r"arrays missing \['y'\]"),
    (lambda a: a.update(extra=np.zeros(2)), r"unexpected \['extra'\]"),
    (lambda a: a.update(y=a["y"][:1]), "array 'y' is float64"),
    (lambda a: a.update(x=a["x"].astype(np.float32)), "array 'x' is float32"),
    (lambda a: a["grad.x"].reshape(-1).__setitem__(0, np.nan), "array 'grad.x' holds non-finite values"),
])
def test_a_case_file_must_hold_every_array_of_its_case(tmp_path, change, match):
    suite = _copy(tmp_path)
    name = _rewrite_case(suite, 0, change)
    with pytest.raises(GoldenIntegrityError, match=match) as info:
        load_suite(suite)
    assert name in str(info.value)


def test_a_json_case_with_a_value_outside_float32_is_refused(tmp_path):
    suite = _copy(tmp_path, PACKAGED_JSON)
    manifest = json.loads((suite / "manifest.json").read_text())
    entry = next(e for e in manifest["cases"] if e["dtype"] == "float32")
    document = json.loads((suite / entry["file"]).read_text())
    document["arrays"]["x"]["hex"][0] = (0.1).hex()          # 0.1 is not a float32 number
    data = (json.dumps(document) + "\n").encode()
    (suite / entry["file"]).write_bytes(data)
    entry["sha256"] = sha256(data)
    (suite / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GoldenIntegrityError, match="not float32 numbers"):
        load_suite(suite)
    with pytest.raises(ValueError, match="not a golden array record"):
        array_from_record({"dtype": "int64", "shape": [1], "hex": ["0x1p+0"]})
