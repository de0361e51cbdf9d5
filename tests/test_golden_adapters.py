"""Checking outside implementations: the adapter protocol (declared gradients, parameter mappings, the case
it is told about), the shipped PyTorch examples, robustness to adapters that misbehave, the JSON and JUnit
reports, exit statuses and the pytest plugin."""
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import kinn_ref as kr
from kinn_ref.analysis.golden_adapter import AdapterError, CaseInfo
from kinn_ref.analysis.golden_cases import spec_from_dict, spec_to_dict
from kinn_ref.analysis.golden_check import check_implementation, compare, exit_status, format_table
from kinn_ref.analysis.golden_store import GoldenData, load_suite
from kinn_ref.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
HELPERS = Path(__file__).resolve().parent / "golden_adapters"
MISBEHAVING = HELPERS / "misbehaving.py"
BAD = "none-expeuler-cells-raw-K3-static-seq"       # the case misbehaving.py misbehaves on
NONE_CASES = "none-[er]*"        # four uncoupled cases (euler, expeuler twice, rk4), BAD among them
N_NONE = len(load_suite(select=NONE_CASES)[1])


@pytest.fixture(scope="module")
def loaded():
    return {case.name: case for case in load_suite()[1]}


def _reference(spec, params, x, V0, dy):
    s = spec_from_dict(spec)
    y, tape = kr.forward(s, params, x, V0)
    return y, kr.backward(s, params, tape, dy)


def _by_name(results):
    return {r.name: r for r in results}


# --- declared gradients, forward-only checks, the case argument -------------------------------------------

def test_declared_gradients_are_compared_and_the_others_reported_as_not_compared():
    def adapter(spec, params, x, V0, dy):
        y, grads = _reference(spec, params, x, V0, dy)
        return y, {k: grads[k] for k in ("x", "W", "V0") if k in grads}
    adapter.implements = ("x", "W", "V0")           # V0: compared where the case has one

    results = check_implementation(adapter, select=NONE_CASES)
    assert results and all(r.status == "partial" and r.passed and not r.failed for r in results)
    for r in results:
        assert "grad.W" in r.errors and "grad.x" in r.errors and "grad.C_raw" not in r.errors
        assert set(r.not_compared) == {"b", "C_raw", "g_raw", "leak", "beta"}
        assert r.label == "ok (partial)" and r.detail == "not compared: " + ", ".join(r.not_compared)
    with_V0 = _by_name(results)["none-euler-last-positive-K1-static-V0"]
    assert "grad.V0" in with_V0.errors and "V0" not in with_V0.not_compared
    table = format_table(results)
    assert "ok (partial)" in table and "not compared: C_raw, b, beta, g_raw, leak" in table
    assert table.splitlines()[-2].startswith(f"0 ok, {N_NONE} partial, 0 forward-only, 0 mismatch")


def test_a_declared_gradient_that_is_missing_or_wrong_is_a_mismatch(loaded):
    case = loaded["none-euler-last-positive-K1-static-V0"]
    y, grads = _reference(spec_to_dict(case.spec), case.params, case.x, case.V0, case.dy)
    partial = {"x": grads["x"]}
    assert compare(case, y, partial, 1e-12, implements=("x", "W")).detail == "missing gradients ['W']"
    assert compare(case, y, dict(partial, W=grads["W"] * 2), 1e-12, implements=("x", "W")).status == "mismatch"
    # an undeclared gradient that is returned is compared too
    result = compare(case, y, dict(partial, b=grads["b"] * 2), 1e-12, implements=("x",))
    assert result.status == "mismatch" and "grad.b" in result.detail
    # without a declaration every gradient is required (the protocol of before)
    assert compare(case, y, partial, 1e-12).status == "mismatch"


def test_a_forward_only_check_is_marked_as_such():
    results = check_implementation(lambda spec, params, x, V0, dy: (_reference(spec, params, x, V0, dy)[0], None),
                                   select="kirchhoff-*")
    assert all(r.status == "forward-only" and r.passed and set(r.errors) == {"y"} for r in results)
    assert all(r.label == "ok (forward only)" and "W" in r.not_compared for r in results)
    assert "ok (forward only)" in format_table(results) and exit_status(results) == 0


def test_the_adapter_is_given_the_case_layer_and_tier():
    seen = {}

    def adapter(spec, params, x, V0, dy, case):
        assert isinstance(case, CaseInfo) and case.spec == spec
        seen[case.name] = (case.layer, case.tier, case.dtype, case.input, case.has_V0)
        raise NotImplementedError("only looking")

    results = check_implementation(adapter, select="*seed-KINNLayers")
    assert seen == {"seed-KINNLayers": ("KINNLayers", "basic", "float64", "static", False),
                    "float32-seed-KINNLayers": ("KINNLayers", "basic", "float32", "static", False)}
    assert {r.status for r in results} == {"unsupported"} and exit_status(results) == 3


# --- mapping the raw parameters to an implementation's own and its gradients back --------------------------

class ScaledAdapter:
    """An implementation whose own parameters are named and scaled differently: ``cap = 2 C_raw``, ``Wt = W^T``;
    map_grads applies the chain rule back."""

    def map_params(self, params, case):
        own = {k: v for k, v in params.items() if k not in ("C_raw", "W")}
        return dict(own, cap=2 * params["C_raw"], Wt=params["W"].T.copy())

    def map_grads(self, grads, params, case):
        raw = {k: v for k, v in grads.items() if k not in ("cap", "Wt")}
        return dict(raw, C_raw=2 * grads["cap"], W=grads["Wt"].T)

    def __call__(self, spec, params, x, V0, dy):
        raw = {k: v for k, v in params.items() if k not in ("cap", "Wt")}
        raw.update(C_raw=params["cap"] / 2, W=params["Wt"].T.copy())
        y, grads = _reference(spec, raw, x, V0, dy)
        return y, dict({k: v for k, v in grads.items() if k not in ("C_raw", "W")}, cap=grads["C_raw"] / 2,
                       Wt=grads["W"].T)


def test_parameters_and_gradients_are_mapped_through_the_declared_functions():
    results = check_implementation(ScaledAdapter(), select="dense-*")
    assert results and all(r.status == "ok" for r in results)
    wrong = ScaledAdapter()
    wrong.map_grads = lambda grads, params, case: dict(ScaledAdapter.map_grads(wrong, grads, params, case),
                                                       C_raw=grads["cap"])          # the factor 2 forgotten
    assert all(r.status == "mismatch" and "grad.C_raw" in r.detail
               for r in check_implementation(wrong, select="dense-*"))


def test_a_malformed_declaration_is_refused():
    def adapter(spec, params, x, V0, dy):
        raise AssertionError("never called")
    adapter.implements = ("C", "x")
    with pytest.raises(AdapterError, match=r"gradients the suite does not have: \['C'\]"):
        check_implementation(adapter, select="seed-*")
    adapter.implements = "x"
    with pytest.raises(AdapterError, match="must be a list of gradient names"):
        check_implementation(adapter, select="seed-*")
    adapter.implements, adapter.map_params = None, 3
    with pytest.raises(AdapterError, match="map_params must be a function"):
        check_implementation(adapter, select="seed-*")


def _synthetic_case(spec, seed=5):
    """A case with expected values from the NumPy reference, for features the suite's cases do not combine."""
    params = kr.init_params(spec, seed=seed)
    rng = np.random.default_rng(seed)
    params.update(W=np.eye(spec.n_nodes), b=np.zeros(spec.n_nodes),
                  g_raw=rng.uniform(-0.5, 1.0, params["g_raw"].shape),
                  C_raw=rng.uniform(-0.5, 1.0, params["C_raw"].shape))
    x = rng.uniform(-1, 1, (2, spec.n_nodes))
    dy = rng.uniform(-1, 1, (2, spec.readout_width))
    y, tape = kr.forward(spec, params, x)
    grads = kr.backward(spec, params, tape, dy)
    entry = {"name": "synthetic", "layer": "KINNLayer", "dtype": "float64", "spec": spec_to_dict(spec),
             "input": "static", "has_V0": False, "batch": 2, "tolerance": {"cpu": 1e-12, "gpu": 1e-11}}
    return GoldenData(entry=entry, spec=spec, params=params, x=x, V0=None, dy=dy, y=y, grads=grads)


def test_the_seed_layer_adapter_maps_the_positive_parameterization():
    pytest.importorskip("torch")
    from kinn_ref.analysis.golden_adapter import declaration, run_case
    from kinn_ref.analysis.golden_check import adapter_inputs, check_case
    from kinn_ref.analysis.golden_adapter import load_adapter
    adapter = load_adapter(f"{EXAMPLES / 'torch_seed_layer.py'}:adapter")
    spec = kr.LayerSpec(3, 3, coupling="dense", integrator="euler", dt=0.1, n_steps=4, param="positive")
    case = _synthetic_case(spec)        # a layer made with kinn_ref's positive parameterization, W = I, g > 0
    result = check_case(case, run_case(adapter, declaration(adapter), *adapter_inputs(case)))
    assert result.status == "partial" and result.not_compared == ("W", "b", "beta")
    assert set(result.errors) == {"y", "grad.C_raw", "grad.g_raw", "grad.G_raw", "grad.leak", "grad.x"}
    assert max(result.errors.values()) < 1e-14
    case.params["W"] = case.params["W"][::-1].copy()      # a projection the seed layer does not have
    assert run_case(adapter, declaration(adapter), *adapter_inputs(case)).kind == "unsupported"


# --- the shipped PyTorch examples --------------------------------------------------------------------------

def test_the_seed_layer_example_passes_its_cases_with_partial_gradients():
    pytest.importorskip("torch")
    results = check_implementation(f"{EXAMPLES / 'torch_seed_layer.py'}:adapter")
    passed = {r.name: r for r in results if r.passed}
    assert set(passed) == {"seed-KINNLayers", "float32-seed-KINNLayers", "float32-long-seed-KINNLayers-T200"}
    assert all(r.status == "partial" and r.not_compared == ("W", "b", "beta") for r in passed.values())
    assert {r.status for r in results if r.name not in passed} == {"unsupported"}
    assert exit_status(results) == 0


def test_the_full_pytorch_example_passes_every_case():
    pytest.importorskip("torch")
    results = check_implementation(f"{EXAMPLES / 'torch_kinn.py'}:adapter")
    assert len(results) == len(load_suite()[0]["cases"])
    assert [r.name for r in results if r.status != "ok"] == []


def test_a_step_off_by_one_part_in_a_million_fails_every_float64_case_and_no_float32_case():
    """The measurement behind docs/golden.md's sentence: dt (1 + 1e-6) in the full PyTorch example."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import torch_kinn
    finally:
        sys.path.remove(str(EXAMPLES))

    def off(spec, params, x, V0, dy):
        return torch_kinn.adapter(dict(spec, dt=spec["dt"] * (1 + 1e-6)), params, x, V0, dy)

    results = check_implementation(off)
    assert {r.status for r in results if r.dtype == "float64"} == {"mismatch"}
    float32 = [r for r in results if r.dtype == "float32"]
    assert len(float32) == 10 and {r.status for r in float32} == {"ok"}
    assert max(r.errors["y"] for r in float32) < 1e-5 and all(max(r.errors.values()) <= r.tolerance for r in float32)


# --- results that are malformed, complex or not finite: that case alone fails ------------------------------

@pytest.mark.parametrize("name,status,message", [
    ("complex_y", "mismatch", "y: complex values (complex128)"),
    ("complex_grad", "mismatch", "grad.W: complex values (complex128)"),
    ("nan_y", "mismatch", "y: 1 non-finite value(s) of "),
    ("inf_grad", "mismatch", "grad.leak: 9 non-finite value(s) of 9 (first at index (0, 0): inf)"),
    ("y_wrong_shape", "mismatch", "y: shape (2, 1, 9) differs from the expected (2, 3, 9)"),
    ("y_a_string", "mismatch", "y: not a numeric array (dtype <U1, from str)"),
    ("y_only", "error", "malformed result: the adapter must return (y, grads), got ndarray"),
    ("three_items", "error", "malformed result: the adapter must return (y, grads), got a tuple of 3 items"),
    ("grads_a_list", "error", "malformed result: grads must be a dict of arrays or None, got list"),
    ("y_none", "error", "malformed result: y is None"),
])
def test_a_bad_result_fails_its_case_alone(name, status, message):
    from kinn_ref.analysis.golden_adapter import load_adapter
    results = _by_name(check_implementation(load_adapter(f"{MISBEHAVING}:{name}"), select=NONE_CASES))
    assert len(results) == N_NONE and results[BAD].status == status and message in results[BAD].detail, \
        results[BAD].detail
    assert all(r.status == "ok" for n, r in results.items() if n != BAD)


def test_an_adapter_that_hangs_exits_or_crashes_fails_that_case_and_the_run_goes_on():
    hang = _by_name(check_implementation(f"{MISBEHAVING}:hangs", select=NONE_CASES, timeout=1.5))
    assert hang[BAD].status == "error" and hang[BAD].detail == \
        "timed out after 1.5 s (the adapter's process was stopped)"
    assert hang[BAD].seconds < 10 and all(r.status == "ok" for n, r in hang.items() if n != BAD)
    hard = _by_name(check_implementation(f"{MISBEHAVING}:exits_hard", select=NONE_CASES))
    assert hard[BAD].status == "error" and \
        hard[BAD].detail == "the adapter's process ended during this case (exit status 7)"
    assert all(r.status == "ok" for n, r in hard.items() if n != BAD)
    soft = _by_name(check_implementation(f"{MISBEHAVING}:exits", select=NONE_CASES))
    assert soft[BAD].status == "error" and soft[BAD].detail == "the adapter called sys.exit(3)"
    assert all(r.status == "ok" for n, r in soft.items() if n != BAD)


def test_sys_exit_in_process_is_reported_not_raised():
    from kinn_ref.analysis.golden_adapter import load_adapter
    results = _by_name(check_implementation(load_adapter(f"{MISBEHAVING}:exits"), select=NONE_CASES))
    assert results[BAD].detail == "the adapter called sys.exit(3)"


@pytest.mark.parametrize("module,message", [
    ("import_fails.py", "failed while being imported: RuntimeError: this module cannot be imported "
                        "(at import_fails.py:2)"),
    ("sys_exit_on_import.py", "failed while being imported: the adapter called sys.exit('no adapter today')"),
    ("exits_on_import.py", "the adapter's process ended while loading it (exit status 5)"),
])
def test_an_adapter_that_cannot_load_is_one_line_and_exit_2(capsys, module, message):
    target = f"{HELPERS / module}:adapter"
    with pytest.raises(AdapterError, match="impl"):
        check_implementation(target, select=NONE_CASES)
    assert main(["golden", "check", "--impl", target, "--cases", NONE_CASES]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kinn-ref golden: error: ") and message in err, err
    assert "Traceback" not in captured.out + captured.err


def test_the_timeout_is_checked():
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0, got 0"):
        check_implementation(f"{MISBEHAVING}:reference", timeout=0)
    with pytest.raises(ValueError, match="a timeout needs the adapter named as 'module:function'"):
        check_implementation(_reference, timeout=5)
    assert main(["golden", "check", "--impl", f"{MISBEHAVING}:reference", "--timeout", "-1"]) == 2


# --- the command line: exit statuses, the JSON report and JUnit XML ----------------------------------------

def test_exit_statuses_of_check_and_verify(capsys):
    check = ["golden", "check", "--cases", NONE_CASES, "--impl"]
    assert main(check + [f"{MISBEHAVING}:reference"]) == 0
    assert main(check + [f"{MISBEHAVING}:forward_only"]) == 0
    assert main(check + [f"{MISBEHAVING}:nan_y"]) == 1
    assert main(check + [f"{MISBEHAVING}:unsupported"]) == 3
    assert main(check + ["no_such_module_xyz:adapter"]) == 2
    assert main(["golden", "verify", "--backend", "numpy", "--cases", "seed-*"]) == 0
    assert main(["golden", "verify", "--backend", "numpy", "--cases", "seed-*", "--tiers", "no-such-tier"]) == 2


def test_the_adapter_output_stays_off_the_table(capfd):
    assert main(["golden", "check", "--cases", "seed-KINNLayers", "--impl", f"{MISBEHAVING}:prints"]) == 0
    out, err = capfd.readouterr()
    assert "a line from the adapter" in err and "a line from the adapter" not in out


def test_report_json_and_junit_xml(tmp_path, capsys):
    report, junit = tmp_path / "out" / "report.json", tmp_path / "out" / "report.xml"
    assert main(["golden", "check", "--cases", NONE_CASES, "--impl", f"{MISBEHAVING}:nan_y", "--report",
                 str(report), "--junit-xml", str(junit)]) == 1
    data = json.loads(report.read_text())
    assert data["report_format"] == 1 and data["exit_status"] == 1 and data["suite"]["schema_version"] == 1
    (run,) = data["runs"]
    assert run["target"] == f"{MISBEHAVING}:nan_y" and run["exit_status"] == 1
    assert run["summary"] == {"ok": N_NONE - 1, "partial": 0, "forward-only": 0, "mismatch": 1, "error": 0,
                              "unsupported": 0, "total": N_NONE}
    cases = {c["name"]: c for c in run["cases"]}
    bad = cases[BAD]
    assert bad["status"] == "mismatch" and not bad["passed"] and "y: 1 non-finite value(s)" in bad["detail"]
    assert "y" not in bad["errors"] and bad["errors"]["grad.W"] < 1e-12
    good = cases["none-rk4-last-raw-K1-sequence"]
    assert good["status"] == "ok" and good["not_compared"] == [] and good["tier"] == "basic"
    assert set(good["errors"]) == {"y", "grad.W", "grad.b", "grad.C_raw", "grad.g_raw", "grad.leak",
                                   "grad.beta", "grad.x"} and good["seconds"] >= 0

    root = ET.parse(junit).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("tests") == str(N_NONE) and suite.get("failures") == "1" and suite.get("errors") == "0"
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == [BAD] and "non-finite" in failed[0].find("failure").get("message")

    assert main(["golden", "check", "--cases", "*seed-KINNLayers", "--impl", f"{MISBEHAVING}:forward_only",
                 "--junit-xml", str(junit), "--report", str(report)]) == 0
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["seed-KINNLayers"].iter("property")}
    assert props["status"] == "forward-only" and "W" in props["not_compared"]
    assert "forward-only" in cases["seed-KINNLayers"].find("system-out").text
    assert json.loads(report.read_text())["runs"][0]["summary"]["forward-only"] == 2


def test_verify_writes_the_same_report(tmp_path, capsys):
    report = tmp_path / "verify.json"
    assert main(["golden", "verify", "--backend", "numpy", "--cases", "seed-*", "--report", str(report)]) == 0
    (run,) = json.loads(report.read_text())["runs"]
    assert run["target"] == "backend numpy" and run["summary"]["ok"] == 1 and run["exit_status"] == 0


# --- the pytest plugin ---------------------------------------------------------------------------------------

pytest_plugins = ["pytester"]


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    from importlib.metadata import entry_points
    assert "kinn_ref.analysis.golden_pytest" in {e.value for e in entry_points(group="pytest11")}


def test_the_plugin_runs_one_test_per_case(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "--kinn-golden",
                                           f"{MISBEHAVING}:nan_y", "--kinn-golden-cases", NONE_CASES,
                                           "--kinn-golden-tier", "basic", "-rA", "--junit-xml=out.xml")
    result.assert_outcomes(passed=N_NONE - 1, failed=1)
    result.stdout.fnmatch_lines([f"*{BAD}*mismatch: y: 1 non-finite value(s) of 54*",
                                 f"FAILED kinn-golden::{BAD}*"])
    props = {p.get("name"): p.get("value") for c in ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
             if c.get("name") == "none-rk4-last-raw-K1-sequence" for p in c.iter("property")}
    assert props["kinn_golden_status"] == "ok"


def test_the_plugin_reports_partial_passes_and_skips_unsupported_cases(pytester):
    pytest.importorskip("torch")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "--kinn-golden",
                                           f"{EXAMPLES / 'torch_seed_layer.py'}:adapter", "--kinn-golden-cases",
                                           "*-KINNLayers*", "-k", "not float32")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*kinn-golden: passed, not every gradient compared*",
                                 "seed-KINNLayers: ok (partial): not compared: W, b, beta"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist", "--kinn-golden",
                                           f"{MISBEHAVING}:unsupported", "--kinn-golden-cases", NONE_CASES)
    result.assert_outcomes(skipped=N_NONE)


def test_the_plugin_refuses_an_unusable_selection_and_fails_on_an_unloadable_adapter(pytester):
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--kinn-golden", f"{MISBEHAVING}:reference",
                                           "--kinn-golden-tier", "no-such-tier")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kinn-golden: no golden case of tier no-such-tier*"])
    result = pytester.runpytest_subprocess("-p", "no:xdist", "--kinn-golden", f"{HELPERS / 'import_fails.py'}:adapter",
                                           "--kinn-golden-cases", NONE_CASES)
    result.assert_outcomes(failed=N_NONE)
    result.stdout.fnmatch_lines(["*the adapter cannot be used: impl module*failed while being imported*"])
    assert "Traceback" not in result.stdout.str()


def test_without_the_option_the_plugin_adds_nothing(pytester):
    pytester.makepyfile("def test_one():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(passed=1)


def test_the_cli_prints_no_traceback_for_a_bad_adapter_module():
    proc = subprocess.run([sys.executable, "-m", "kinn_ref.cli", "golden", "check", "--impl",
                           f"{HELPERS / 'exits_on_import.py'}:adapter", "--cases", NONE_CASES],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
