"""``kinn-ref train``: train a KINN (or the MLP baseline) on a built-in task, with checkpoints and resume."""
import sys

from .._checks import check_seed
from ..tasks.registry import TASKS
from .output import add_output_argument, default_out, prepare_output_dir, run_files

#: The loss curves' plot, beside the run's own files.
CURVES_NAME = "curves.png"


def add_arguments(parser):
    parser.add_argument("--task", choices=sorted(TASKS), default="oscillator", help="task")
    parser.add_argument("--model", default=None,
                        help="model of the task: " + ", ".join(f"{name} {{{', '.join(task.models)}}}"
                                                               for name, task in sorted(TASKS.items()))
                        + " (default: the task's first)")
    parser.add_argument("--size", choices=("small", "full"), default="small",
                        help="data size and default epochs: small (seconds) or full (docs/results.md)")
    parser.add_argument("--backend", default="auto", help="numpy, numba, cuda or auto")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=None,
                        help="optimizer (default: the task's)")
    parser.add_argument("--lr", type=float, default=None, help="base learning rate (default: the task's)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total epochs (default: the task's); with --resume, a larger total extends the run")
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: the task's)")
    parser.add_argument("--clip-norm", type=float, default=None,
                        help="clip the global gradient norm (default: no clipping)")
    parser.add_argument("--penalty", type=float, default=None, help="conductance penalty weight (default: none)")
    parser.add_argument("--guard", action="store_true",
                        help="keep each layer's dt inside its stable region, checked before the first step and "
                             "after every step; a circuit unstable for every dt stops training with an error")
    parser.add_argument("--guard-warn-unstable", action="store_true",
                        help="with --guard, a circuit unstable for every dt is a warning and training goes on "
                             "(default: an error)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of weights and batch order, and of the data of a task without standard data")
    parser.add_argument("--data-seed", type=int, default=None,
                        help="seed of the data: another draw than the task's standard data (mnist1d: the "
                             "package's split, seed 42) or than --seed")
    add_output_argument(parser, "--out", default=None, help="run folder (default ./kinn-runs/train/TASK-MODEL)")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in OUT/checkpoint.npz")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--distributed", choices=("none", "mpi"), default="none",
                        help="mpi: data-parallel over the ranks of mpiexec -n R; with --backend cuda the whole "
                             "step runs on each rank's GPU (docs/scaling.md)")


def _existing_run(out):
    """The run files already in ``out`` (a finished or interrupted run)."""
    from ..training.trainer import CHECKPOINT_NAME, METRICS_NAME
    return [name for name in (CHECKPOINT_NAME, METRICS_NAME) if (out / name).exists()]


def _last_checkpoint(path):
    """Where the last checkpoint is and its epoch, for the message after an interrupt."""
    from ..training.checkpoint import CheckpointError, load_checkpoint
    try:
        return f"the last checkpoint is {path} (epoch {load_checkpoint(path).epoch}); continue with --resume"
    except CheckpointError:
        return "no checkpoint was written yet"


def run(args):
    if args.distributed == "mpi":
        from ..scaleout.data_parallel import run_distributed
        return run_distributed(args, _run)
    return _run(args)


def _checked(args):
    """The run's task, model and output folder, every argument checked (ValueError naming a bad one)."""
    from ..training.trainer import CHECKPOINT_NAME
    check_seed("--seed", args.seed)
    if args.data_seed is not None:
        check_seed("--data-seed", args.data_seed)
    task = TASKS[args.task]
    model = args.model or next(iter(task.models))
    if model not in task.models:
        raise ValueError(f"--model must be one of {sorted(task.models)} for task {args.task!r}, got {model!r}")
    out = prepare_output_dir(args.out or default_out("train", f"{args.task}-{model}"),
                             files=run_files() + (CURVES_NAME,))
    existing = _existing_run(out)
    if existing and not args.resume:
        raise ValueError(f"--out {out} already holds a run ({', '.join(existing)}); pass --resume to continue it "
                         "(with a larger --epochs to extend it) or choose another --out")
    if args.guard_warn_unstable and not args.guard:
        raise ValueError("--guard-warn-unstable needs --guard")
    if args.resume and not (out / CHECKPOINT_NAME).exists():
        raise ValueError(f"--resume: there is no checkpoint to resume from in {out}")
    return task, model, out


def _run(args, communicator=None):
    from ..tasks.run import train_task
    from ..training.plots import plot_curves
    from ..training.stability import StabilityGuard
    from ..training.trainer import CHECKPOINT_NAME
    # with MPI, every rank checks the arguments and the ranks agree before any of them trains
    task, model, out = _checked(args) if communicator is None else communicator.agreed(_checked, args)
    extra = {}
    if communicator is not None:
        from ..scaleout.data_parallel import setup_rank, trainer_class
        communicator.agreed(setup_rank, communicator, args.backend)
        extra["trainer_class"] = trainer_class(communicator)
    try:
        result, records, trainer = train_task(
            args.task, model, size=args.size, seed=args.seed, data_seed=args.data_seed, backend=args.backend,
            out_dir=out, **extra, resume=args.resume, progress=not args.no_progress, epochs=args.epochs, lr=args.lr,
            batch_size=args.batch_size, optimizer=args.optimizer, clip_norm=args.clip_norm, penalty=args.penalty,
            guard=StabilityGuard(on_unstable="warn") if args.guard_warn_unstable else args.guard or None)
    except KeyboardInterrupt:
        print(f"kinn-ref train: interrupted; {_last_checkpoint(out / CHECKPOINT_NAME)}", file=sys.stderr)
        return 130
    if communicator is not None and not communicator.is_root:
        return 0          # rank 0 writes the plot and reports
    if trainer.extended_from is not None and result["epochs"] > trainer.extended_from:
        print(f"extended the run from {trainer.extended_from} to {result['epochs']} epochs (the learning-rate "
              "schedule was planned anew over the new total)")   # a shortened run is the trainer's warning
    plot_curves({model: records}, out / CURVES_NAME, title=f"{args.task}: {model}", loss_name=task.loss,
                baselines=result["baselines"])
    print(f"{args.task} / {model} on {result['backend']}: held-out {result['metric']} = {result['value']:.4g} "
          f"after {result['epochs']} epochs ({result['compile_seconds']:.1f} s first step, "
          f"{result['train_seconds']:.1f} s training, {result['parameters']} parameters)")
    for name, value in result["baselines"].items():
        print(f"  {name}: {value:.4g}")
    published = result["data"].get("published_accuracy")
    if published:
        print(f"  published with the data set ({task.name}, its standard split): "
              + ", ".join(f"{name} {value:.2f}" for name, value in published.items()))
    print(f"wrote {out}/" + ", ".join(run_files() + (CURVES_NAME,)))
    return 0
