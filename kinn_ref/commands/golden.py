"""``kinn-ref golden``: the golden reference suite (docs/golden.md).

- ``export DIR``: regenerate the cases in high precision into DIR (``--copy``: copy the packaged suite);
- ``verify --backend NAME``: run every case on a backend (``all``: every available one), compare forward
  values and all gradients, print a per-case table with the digits of agreement and the fewest digits per
  tier; exit status 1 on any mismatch (``--tiers basic,edge,...`` selects tiers, default all);
- ``check --impl module:function``: the same for an outside implementation through the adapter documented
  in docs/golden.md (``path/to/file.py:function`` also accepted).
"""
import os
import sys
from pathlib import Path

from .output import add_output_argument


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser("export", help="regenerate the suite in high precision (or copy it) into DIR",
                            formatter_class=parser.formatter_class)
    add_output_argument(export, "directory", metavar="DIR", help="folder to write the cases and manifest.json into")
    export.add_argument("--copy", action="store_true", help="copy the packaged suite instead of regenerating")
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
    for p in (verify, check):
        p.add_argument("--dir", type=Path, default=None, help="suite folder (default: the packaged suite)")
        p.add_argument("--cases", default=None, help="glob over case names (default: all)")
        p.add_argument("--tiers", default=None,
                       help="comma-separated tiers: basic, stiff, long, edge, float32 (default: all)")


def _tiers(text):
    """``--tiers a,b`` as a tuple (None: all); the suite's reader refuses unknown names with a ValueError."""
    return None if text is None else tuple(t.strip() for t in text.split(","))


def _export(args):
    from ..analysis.golden_export import copy_files, copy_suite, export_files, export_suite
    from .output import prepare_output_dir
    if args.copy and args.cases is not None:
        raise ValueError("--cases cannot be combined with --copy (the copy is the whole suite)")
    prepare_output_dir(args.directory, "DIR", files=copy_files() if args.copy else export_files(args.cases))
    if args.copy:
        manifest = copy_suite(args.directory)
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
        manifest = export_suite(args.directory, args.cases, args.jobs, progress)
    else:
        with engine:
            manifest = export_suite(args.directory, args.cases, progress=progress, engine=engine)
    print(f"wrote {len(done)} golden cases and manifest.json ({len(manifest['cases'])} cases) to {args.directory}")
    return 0


def _progress(label):
    """A per-case progress line on stderr (the table comes on stdout at the end)."""
    def show(done, total, result):
        print(f"[{done}/{total}] {label}: {result.name} {result.status}", file=sys.stderr, flush=True)
    return show


def run(args):
    from ..analysis.golden_check import check_implementation, format_table, load_adapter, verify_backend
    if args.action == "export":
        return _export(args)
    if args.action == "verify":
        from .. import available_backends
        from ..backends import resolve
        backends = available_backends() if args.backend == "all" else (resolve(args.backend),)
        failed = False
        for backend in backends:
            jobs = args.jobs if args.jobs is not None else (os.cpu_count() or 1) if backend == "numba" else 1
            if jobs > 1:
                print(f"{backend}: running the cases in {jobs} processes", file=sys.stderr, flush=True)
            results = verify_backend(backend, args.dir, args.cases, _progress(backend), jobs=jobs,
                                     tiers=_tiers(args.tiers))
            print(f"backend {backend}")
            print(format_table(results))
            failed |= any(r.failed for r in results)
        return 1 if failed else 0
    results = check_implementation(load_adapter(args.impl), args.dir, args.cases, gpu=args.gpu,
                                   progress=_progress(args.impl), tiers=_tiers(args.tiers))
    print(f"implementation {args.impl}")
    print(format_table(results))
    return 1 if any(r.failed for r in results) else 0
