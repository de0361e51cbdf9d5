"""Machine-readable results of ``kinn-ref golden verify`` and ``check``: a JSON report and JUnit XML.

Both hold one *run* per backend or implementation checked. The JSON report (``--report``) has, per case,
its status, the relative error of every array compared, what was not compared and the detail, and a
summary per run; its layout is ``REPORT_FORMAT`` (docs/golden.md). The JUnit XML (``--junit-xml``) has one
``testsuite`` per run and one ``testcase`` per case: a mismatch is a ``failure``, an error an ``error``, an
unsupported case ``skipped``; a partial or forward-only pass carries its status as a property.
"""
import json
import math
import xml.etree.ElementTree as ET

from kinn_ref import __version__

from .golden_check import STATUSES, exit_status, summary_counts
from .golden_store import atomic_write_bytes

#: Version of the JSON report's layout.
REPORT_FORMAT = 1


def run_record(target, results, gpu=False):
    """The JSON record of one run: ``target`` (``backend numpy`` or the adapter's target) and its results."""
    return {
        "target": target,
        "tolerance": "gpu" if gpu else "cpu",
        "exit_status": exit_status(results),
        "summary": dict(summary_counts(results), total=len(results)),
        "cases": [{"name": r.name, "tier": r.tier, "dtype": r.dtype, "status": r.status, "passed": r.passed,
                   "tolerance": r.tolerance, "errors": {k: _number(e) for k, e in r.errors.items()}, "not_compared": list(r.not_compared),
                   "detail": r.detail, "seconds": r.seconds} for r in results],
    }


def _number(value):
    """A float JSON can hold (an overflowed error becomes the string "inf")."""
    return value if math.isfinite(value) else str(value)


def report(runs, manifest, directory):
    """The whole JSON report of ``runs`` (records of :func:`run_record`) against the suite ``manifest``."""
    statuses = [run["exit_status"] for run in runs]
    return {
        "report_format": REPORT_FORMAT,
        "kinn_ref_version": __version__,
        "suite": {"directory": str(directory), "schema_version": manifest.get("schema_version"),
                  "suite_version": manifest.get("suite_version")},
        "statuses": list(STATUSES),
        "exit_status": max(statuses, key=_severity) if statuses else 0,
        "runs": runs,
    }


def _severity(code):
    return {1: 3, 3: 2, 0: 0}.get(code, 1)


def write_report(path, data):
    """Write the JSON report ``data`` to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def junit_xml(runs):
    """JUnit XML (bytes) of ``runs``: one testsuite per run, one testcase per case."""
    root = ET.Element("testsuites", name="kinn-ref golden")
    for run in runs:
        cases = run["cases"]
        suite = ET.SubElement(root, "testsuite", name=f"kinn-golden {run['target']}", tests=str(len(cases)),
                              failures=str(sum(c["status"] == "mismatch" for c in cases)),
                              errors=str(sum(c["status"] == "error" for c in cases)),
                              skipped=str(sum(c["status"] == "unsupported" for c in cases)),
                              time=f"{sum(c['seconds'] or 0.0 for c in cases):.3f}")
        for c in cases:
            case = ET.SubElement(suite, "testcase", classname=f"kinn_golden.{c['tier']}", name=c["name"],
                                 time=f"{c['seconds'] or 0.0:.3f}")
            properties = ET.SubElement(case, "properties")
            ET.SubElement(properties, "property", name="status", value=c["status"])
            if c["not_compared"]:
                ET.SubElement(properties, "property", name="not_compared", value=", ".join(c["not_compared"]))
            for key, err in c["errors"].items():
                ET.SubElement(properties, "property", name=f"error.{key}", value=_format(err))
            text = _errors_text(c)
            if c["status"] == "mismatch":
                ET.SubElement(case, "failure", message=c["detail"], type="mismatch").text = text
            elif c["status"] == "error":
                ET.SubElement(case, "error", message=c["detail"], type="error").text = text
            elif c["status"] == "unsupported":
                ET.SubElement(case, "skipped", message=f"unsupported: {c['detail']}")
            elif c["status"] != "ok":
                ET.SubElement(case, "system-out").text = f"{c['status']}: {c['detail']}\n{text}"
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _errors_text(c):
    lines = [f"{key}: relative error {_format(err)} (tolerance {c['tolerance']:.0e})" for key, err in c["errors"].items()]
    return "\n".join(lines)


def _format(err):
    return f"{err:.3e}" if isinstance(err, float) else str(err)


def write_junit_xml(path, runs):
    """Write the JUnit XML of ``runs`` to ``path`` atomically."""
    atomic_write_bytes(path, junit_xml(runs))
