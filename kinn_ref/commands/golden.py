"""``kinn-ref golden``: the golden reference suite (docs/golden.md).

- ``export DIR``: regenerate the cases in high precision into DIR (``--copy``: copy the packaged suite);
- ``verify --backend NAME``: run every case on a backend (``all``: every available one), compare forward
  values and all gradients, print a per-case table with the digits of agreement and the fewest digits per
  tier; exit status 1 on any mismatch (``--tiers basic,edge,...`` selects tiers, default all);
- ``check --impl module:function``: the same for an outside implementation through the adapter documented
  in docs/golden.md (``path/to/file.py:function`` also accepted), run in a worker process with a per-case
  ``--timeout``.

Both write a JSON report (``--report``) and JUnit XML (``--junit-xml``) on request. Exit status (the same
for both): 0 every case passed (ok, partial or forward-only; unsupported cases aside), 1 a case failed
(mismatch or error), 2 unusable input (arguments, a suite that fails its integrity check, an adapter that
cannot be loaded), 3 nothing was compared (every case unsupported), 130 interrupted.
"""
import os
import sys
from pathlib import Path

from .output import add_output_argument

#: The JSON Schemas written beside a JSON export (:mod:`kinn_ref.analysis.golden_json`).
SCHEMA_NAMES = ("manifest.schema.json", "case.schema.json")


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser("export", help="regenerate the suite in high precision (or copy it) into DIR",
                            formatter_class=parser.formatter_class)
    add_output_argument(export, "directory", metavar="DIR", help="folder to write the cases and manifest.json into")
    export.add_argument("--copy", action="store_true", help="copy the packaged suite instead of regenerating")
    export.add_argument("--format", choices=("npz", "json"), default="npz",
                        help="case files: .npz, or language-neutral JSON documents with a JSON Schema (default npz)")
    export.add_argument("--cases", default=None, help="glob over case names (default: all)")
    export.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    from ..scaleout.engine import add_engine_arguments
    add_engine_arguments(export)
    verify = sub.add_parser("verify", help="check a kinn_ref backend against the suite",
                            formatter_class=parser.formatter_class)
    verify.add_argument("--backend", required=True, help="backend name, or 'all' for every available one")
    verify.add_argument("--jobs", type=int, default=None,
                        help="worker processes (default: one per CPU for numba, whose kernels compile per "
                             "case kind; 1 for the other backends)")
    check = sub.add_parser("check", help="check an outside implementation through its adapter",
                           formatter_class=parser.formatter_class)
    check.add_argument("--impl", required=True, help="module:function or path/to/file.py:function")
    check.add_argument("--gpu", action="store_true", help="use the GPU tolerances")
    from ..analysis.golden_worker import DEFAULT_TIMEOUT
    check.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help="seconds each case may run before the adapter's process is stopped")
    for p in (verify, check):
        p.add_argument("--dir", type=Path, default=None, help="suite folder (default: the packaged suite)")
        p.add_argument("--format", choices=("npz", "json"), default="npz",
                       help="which form of the packaged suite to read, without --dir (default npz; the same values)")
        p.add_argument("--cases", default=None, help="glob over case names (default: all)")
        p.add_argument("--tiers", default=None,
                       help="comma-separated tiers: basic, stiff, long, edge, float32 (default: all)")
        add_output_argument(p, "--report", kind="file", default=None, metavar="FILE",
                            help="write the results as JSON (per case: status, errors, what was not compared)")
        add_output_argument(p, "--junit-xml", kind="file", default=None, metavar="FILE",
                            help="write the results as JUnit XML")


def _export(args):
    from ..analysis.golden_export import copy_files, copy_suite, export_files, export_suite, write_schemas
    from ..analysis.golden_store import PACKAGED_FOLDERS
    from .output import prepare_output_dir
    if args.copy and args.cases is not None:
        raise ValueError("--cases cannot be combined with --copy (the copy is the whole suite)")
    source = PACKAGED_FOLDERS[args.format]
    files = copy_files(source) if args.copy else export_files(args.cases, args.format)
    if args.format == "json":
        files += list(SCHEMA_NAMES)
    prepare_output_dir(args.directory, "DIR", files=files)
    if args.copy:
        manifest = copy_suite(args.directory, source)
        if args.format == "json":
            write_schemas(args.directory)
        print(f"copied {len(manifest['cases'])} golden cases to {args.directory}")
        return 0
    done = []

    def progress(name):
        done.append(name)
        print(f"[{len(done)}] {name}", file=sys.stderr, flush=True)

    from ..scaleout.engine import engine_from_args
    engine = engine_from_args(args)
    if engine.kind != "serial" and args.jobs != 1:
        raise ValueError("--jobs cannot be combined with --workers or --scheduler (the Dask workers are the jobs)")
    if engine.kind == "serial" and args.jobs != 1:
        manifest = export_suite(args.directory, args.cases, args.jobs, progress, form=args.format)
    else:
        with engine:
            manifest = export_suite(args.directory, args.cases, progress=progress, engine=engine, form=args.format)
    if args.format == "json":
        write_schemas(args.directory)
    print(f"wrote {len(done)} golden cases and manifest.json ({len(manifest['cases'])} cases) to {args.directory}")
    return 0


def _progress(label):
    """A per-case progress line on stderr (the table comes on stdout at the end)."""
    def show(done, total, result):
        print(f"[{done}/{total}] {label}: {result.name} {result.status}", file=sys.stderr, flush=True)
    return show


def _prepare_outputs(args):
    """Check the report files before any work (one line and exit status 2 for a path that cannot be written)."""
    from .output import prepare_output_file
    for path, name in ((args.report, "--report"), (args.junit_xml, "--junit-xml")):
        if path is not None:
            prepare_output_file(path, name)


def _write_outputs(args, runs):
    from ..analysis.golden_report import report, write_junit_xml, write_report
    from ..analysis.golden_store import PACKAGED, read_manifest
    if args.report is not None:
        write_report(args.report, report(runs, read_manifest(args.dir), args.dir or PACKAGED))
    if args.junit_xml is not None:
        write_junit_xml(args.junit_xml, runs)


def _tiers(args):
    """``--tiers a,b`` as a tuple (None: all); the suite's reader refuses unknown names with a ValueError."""
    return None if args.tiers is None else tuple(t.strip() for t in args.tiers.split(",") if t.strip())


def run(args):
    from ..analysis.golden_check import check_implementation, exit_status, format_table, verify_backend
    from ..analysis.golden_report import run_record
    from ..analysis.golden_store import PACKAGED_FOLDERS
    if args.action == "export":
        return _export(args)
    if args.dir is None:
        args.dir = PACKAGED_FOLDERS[args.format]
    elif args.format != "npz":
        raise ValueError("--format selects a form of the packaged suite; with --dir the suite's manifest says its form")
    _prepare_outputs(args)
    runs, statuses = [], []
    if args.action == "verify":
        from .. import available_backends
        from ..backends import resolve
        backends = available_backends() if args.backend == "all" else (resolve(args.backend),)
        for backend in backends:
            jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1) if backend == "numba" else 1
            if jobs > 1:
                print(f"{backend}: running the cases in {jobs} processes", file=sys.stderr, flush=True)
            results = verify_backend(backend, args.dir, args.cases, _progress(backend), jobs=jobs,
                                     tiers=_tiers(args))
            print(f"backend {backend}")
            print(format_table(results))
            runs.append(run_record(f"backend {backend}", results, backend == "cuda"))
            statuses.append(exit_status(results))
    else:
        from ..analysis.golden_worker import check_timeout
        timeout = check_timeout(args.timeout, "--timeout")
        results = check_implementation(args.impl, args.dir, args.cases, gpu=args.gpu, progress=_progress(args.impl),
                                       timeout=timeout, tiers=_tiers(args))
        print(f"implementation {args.impl}")
        print(format_table(results))
        runs.append(run_record(args.impl, results, args.gpu))
        statuses.append(exit_status(results))
    _write_outputs(args, runs)
    return 1 if 1 in statuses else 3 if 3 in statuses else 0
