"""The golden suite as pytest tests: ``pytest --kinn-golden module:adapter``, one test per case.

Registered as the ``kinn_golden`` plugin (a ``pytest11`` entry point of kinn-ref), so that a project with
kinn-ref installed checks its implementation in its own test run. Options:

- ``--kinn-golden IMPL``: the adapter, ``module:function`` or ``path/to/file.py:function`` (docs/golden.md);
- ``--kinn-golden-cases GLOB``: only the cases whose name matches (default: all);
- ``--kinn-golden-tier TIER``: only these tiers (comma-separated or repeated; default: all);
- ``--kinn-golden-dir DIR``: a suite other than the packaged one;
- ``--kinn-golden-gpu``: the GPU tolerances;
- ``--kinn-golden-timeout SECONDS``: per case (default 120).

A case passes when it is ``ok``, ``partial`` or ``forward-only`` (the last two are recorded as the test's
``kinn_golden_status`` property, in JUnit XML too, and listed in the terminal summary), fails on a mismatch
or an error, and is skipped when the adapter does not support it. The adapter runs in one worker process
per pytest process, as in ``kinn-ref golden check``. Without ``--kinn-golden`` the plugin does nothing.
"""
import pytest


def pytest_addoption(parser):
    group = parser.getgroup("kinn-golden", "the kinn_ref golden reference suite")
    group.addoption("--kinn-golden", metavar="IMPL", default=None,
                    help="check this adapter (module:function or path/to/file.py:function) against the suite")
    group.addoption("--kinn-golden-cases", metavar="GLOB", default=None, help="only the cases matching GLOB")
    group.addoption("--kinn-golden-tier", metavar="TIER", action="append", default=None,
                    help="only these tiers (comma-separated or repeated)")
    group.addoption("--kinn-golden-dir", metavar="DIR", default=None, help="a suite folder other than the packaged one")
    group.addoption("--kinn-golden-gpu", action="store_true", default=False, help="use the GPU tolerances")
    group.addoption("--kinn-golden-timeout", metavar="SECONDS", type=float, default=None,
                    help="seconds each case may run (default 120)")


class GoldenSession:
    """The selected cases and the adapter's worker process, shared by the items of one pytest process."""

    def __init__(self, config):
        from .golden_check import select_cases
        from .golden_store import load_suite
        from .golden_worker import DEFAULT_TIMEOUT, check_timeout
        option = config.getoption
        self.target, self.gpu = option("kinn_golden"), option("kinn_golden_gpu")
        timeout = option("kinn_golden_timeout")
        self.timeout = check_timeout(DEFAULT_TIMEOUT if timeout is None else timeout, "--kinn-golden-timeout")
        tiers = option("kinn_golden_tier")
        tiers = None if tiers is None else [t.strip() for text in tiers for t in text.split(",") if t.strip()]
        _, cases = load_suite(option("kinn_golden_dir"), option("kinn_golden_cases"))
        self.cases = select_cases(cases, tiers)
        self.process, self.load_error, self.passed = None, None, []

    def run(self, case):
        """The :class:`~analysis.golden_check.CaseResult` of ``case``."""
        import time

        from .golden_adapter import AdapterError
        from .golden_check import adapter_inputs, check_case
        from .golden_worker import AdapterProcess
        if self.load_error is not None:
            raise GoldenAdapterUnusable(self.load_error)
        if self.process is None:
            self.process = AdapterProcess(self.target, self.timeout)
        start = time.perf_counter()
        try:
            outcome = self.process.run(*adapter_inputs(case))
        except AdapterError as exc:
            self.load_error = str(exc)
            raise GoldenAdapterUnusable(self.load_error) from None
        return check_case(case, outcome, self.gpu, time.perf_counter() - start)

    def close(self):
        if self.process is not None:
            self.process.close()


class GoldenAdapterUnusable(Exception):
    """The adapter cannot be loaded: every case fails with this message."""


class GoldenCaseItem(pytest.Item):
    """One golden case, run through the adapter."""

    def __init__(self, *, case, golden, **kwargs):
        super().__init__(**kwargs)
        self.case, self.golden = case, golden
        self.add_marker(pytest.mark.kinn_golden)

    def runtest(self):
        result = self.golden.run(self.case)
        self.user_properties.append(("kinn_golden_status", result.status))
        for key, err in result.errors.items():
            self.user_properties.append((f"kinn_golden_error.{key}", f"{err:.3e}"))
        if result.status == "unsupported":
            pytest.skip(f"unsupported: {result.detail}")
        if result.failed:
            raise GoldenCaseFailed(result)
        if result.status != "ok":
            self.user_properties.append(("kinn_golden_not_compared", ", ".join(result.not_compared)))
            self.golden.passed.append(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, GoldenCaseFailed):
            r = excinfo.value.result
            lines = [f"{r.name} ({r.dtype}, tier {r.tier}): {r.status}: {r.detail}"]
            lines += [f"  {key:<12} relative error {err:.3e}   tolerance {r.tolerance:.0e}"
                      for key, err in r.errors.items()]
            return "\n".join(lines)
        if isinstance(excinfo.value, GoldenAdapterUnusable):
            return f"the adapter cannot be used: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.golden.target, None, f"kinn-golden: {self.case.name}"


class GoldenCaseFailed(Exception):
    def __init__(self, result):
        super().__init__(result.detail)
        self.result = result


def pytest_configure(config):
    config.addinivalue_line("markers", "kinn_golden: a case of the kinn_ref golden suite (--kinn-golden)")
    if config.getoption("kinn_golden", None):
        try:
            config._kinn_golden = GoldenSession(config)
        except ValueError as exc:            # an unusable suite, selection or timeout: a usage error
            raise pytest.UsageError(f"--kinn-golden: {exc}") from None
        config.add_cleanup(config._kinn_golden.close)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    golden = getattr(config, "_kinn_golden", None)
    if golden is None:
        return
    items.extend(GoldenCaseItem.from_parent(session, name=case.name, nodeid=f"kinn-golden::{case.name}", case=case,
                                            golden=golden) for case in golden.cases)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    golden = getattr(config, "_kinn_golden", None)
    if golden is None or not golden.passed:
        return
    terminalreporter.section("kinn-golden: passed, not every gradient compared")
    for r in golden.passed:
        terminalreporter.line(f"{r.name}: {r.label}: {r.detail}")
