"""Markdown report of a benchmark run (the format of docs/benchmarks.md)."""

#: Speed goals of the numba backend: minimum ratio of (NumPy time, PyTorch-CPU time) to numba time.
GOALS = {"cell": {"numpy": 10.0, "torch": 5.0}, "dense": {"numpy": 2.0, "torch": 1.0},
         "grid": {"numpy": 5.0, "torch": 2.0}}


def _ms(seconds):
    return f"{1e3 * seconds:.1f}"


def _ratio(result, name, other):
    ratio = result["ratio"].get(other)
    if ratio is None:
        return "-"
    goal = GOALS.get(name, {}).get(other)
    mark = "" if goal is None else (" (goal met)" if ratio >= goal else f" (goal {goal:g}x: missed)")
    return f"{ratio:.1f}x{mark}"


def markdown(run):
    """The report of ``run`` (the dict written by ``kinn-ref bench``) as markdown text."""
    m, lim = run["machine"], run["limits"]
    lines = [f"Command: `{run['command']}`  ",
             f"Date: {run['date']}  ",
             f"Machine: {m['cpu']}, {m['cpus']} CPUs ({m['numba_threads']} numba threads"
             + (f", {m['torch_threads']} torch threads" if "torch_threads" in m else "") + "); "
             f"Python {m['python']}, NumPy {m['numpy']}, numba {m['numba']}"
             + (f", PyTorch {m['torch']}" if "torch" in m else "")
             + f"; 1-minute load average {m['load_average']:.1f} at the start  ",
             f"Measured limits: GEMM {lim['gemm_gflops_float32']:.0f} GFLOP/s (float32), "
             f"{lim['gemm_gflops_float64']:.0f} GFLOP/s (float64); copy {lim['copy_gbs']:.1f} GB/s "
             "(read + write)", "",
             "Forward + backward, median of the repeats in milliseconds; ratios are medians of the "
             "per-repeat ratios (time of the other backend / numba time).", ""]
    backends = run["backends"]
    head = ["config"] + [f"{b} fwd / bwd / total" for b in backends] + \
           [f"numba vs {b}" for b in backends[1:]] + ["numba GFLOP/s (of GEMM)", "numba GB/s (of copy)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, res in run["timings"].items():
        name, dtype = label.split("/")
        cells = [label]
        for b in backends:
            s = res["seconds"].get(b)
            cells.append("-" if s is None else f"{_ms(s['forward'])} / {_ms(s['backward'])} / {_ms(s['total'])}")
        cells += [_ratio(res, name, b) for b in backends[1:]]
        t = res["seconds"]["numba"]["total"]
        gf, gb = res["flops"] / t / 1e9, res["bytes"] / t / 1e9
        cells += [f"{gf:.1f} ({100 * gf / lim[f'gemm_gflops_{dtype}']:.0f}%)",
                  f"{gb:.1f} ({100 * gb / lim['copy_gbs']:.0f}%)"]
        lines.append("| " + " | ".join(cells) + " |")
    if run.get("memory"):
        lines += ["", f"Peak memory of one forward + backward (tracemalloc, MiB), all states stored vs "
                      f"`checkpoint_every={run['checkpoint_every']}`:", "",
                  "| config | numba stored | numba checkpointed | numpy stored | numpy checkpointed |",
                  "|---|---|---|---|---|"]
        for label, mem in run["memory"].items():
            lines.append(f"| {label} | " + " | ".join(f"{mem[k] / 2 ** 20:.0f}" for k in
                                                     ("numba", "numba_checkpointed", "numpy",
                                                      "numpy_checkpointed")) + " |")
    if run.get("compile"):
        c = run["compile"]
        lines += ["", f"First call (import + first forward/backward, float32 and float64, fresh process): "
                      f"{c['cold_cache']:.1f} s with an empty kernel cache (compilation), "
                      f"{c['warm_cache']:.1f} s with the cache it left."]
    return "\n".join(lines) + "\n"
