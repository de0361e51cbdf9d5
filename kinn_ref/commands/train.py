"""``kinn-ref train``: train a KINN (or the MLP baseline) on a built-in task, with checkpoints and resume."""
from pathlib import Path

from ..tasks.registry import TASKS


def add_arguments(parser):
    parser.add_argument("--task", choices=sorted(TASKS), default="oscillator", help="task (default oscillator)")
    parser.add_argument("--model", default=None,
                        help="model of the task: burgers {kinn, kinn-grid, mlp}, digits {kinn, mlp}, "
                             "oscillator {kinn-k1, kinn-k2, kinn-k3} (default: the task's first)")
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="data size and default epochs: small (seconds) or full (docs/results.md)")
    parser.add_argument("--backend", default="auto", help="numpy, numba, cuda or auto (default auto)")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None)
    parser.add_argument("--lr", type=float, default=None, help="base learning rate")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--clip-norm", type=float, default=None, help="clip the global gradient norm")
    parser.add_argument("--penalty", type=float, default=None, help="conductance penalty weight")
    parser.add_argument("--guard", action="store_true", help="keep each layer's dt inside its stable region")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default ./kinn-runs/train/TASK-MODEL)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args):
    from ..tasks.run import train_task
    from ..training.plots import plot_curves
    task = TASKS[args.task]
    model = args.model or next(iter(task.models))
    if model not in task.models:
        raise ValueError(f"--model must be one of {sorted(task.models)} for task {args.task!r}, got {model!r}")
    out = args.out or Path("kinn-runs") / "train" / f"{args.task}-{model}"
    result, records, _ = train_task(
        args.task, model, size=args.size, seed=args.seed, backend=args.backend, out_dir=out, resume=args.resume,
        progress=not args.no_progress, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        optimizer=args.optimizer, clip_norm=args.clip_norm, penalty=args.penalty, guard=args.guard or None)
    plot_curves({model: records}, out / "curves.png", title=f"{args.task}: {model}")
    print(f"{args.task} / {model} on {result['backend']}: held-out {result['metric']} = {result['value']:.4g} "
          f"after {result['epochs']} epochs ({result['train_seconds']:.1f} s, {result['parameters']} parameters)")
    print(f"wrote {out}/checkpoint.npz, metrics.jsonl, result.json, curves.png")
    return 0
