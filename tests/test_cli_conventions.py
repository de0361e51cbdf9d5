"""What a user of the command line can expect of every command: documented defaults, one-line errors with
exit status 2, output folders checked before any work, runs never overwritten, finished runs extended."""
import argparse
import json
import os

import numpy as np
import pytest

from kinn_ref import __version__
from kinn_ref.cli import COMMANDS, build_parser, main
from kinn_ref.training import load_checkpoint

TRAIN = ["train", "--task", "oscillator", "--model", "kinn-k1", "--backend", "numpy", "--no-progress",
         "--epochs", "2"]


def _options(parser, name="kinn-ref"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _options(sub, f"{name} {sub_name}")
        elif action.option_strings and action.dest not in ("help", "version"):
            yield name, parser, action


def test_every_option_states_its_default():
    missing = []
    for name, parser, action in _options(build_parser()):
        text = parser.formatter_class("kinn-ref")._get_help_string(action) or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if not flag and not action.required and "default" not in text and action.default is not None:
            missing.append(f"{name} {action.option_strings[0]}")
        if not text:
            missing.append(f"{name} {action.option_strings[0]} (no help)")
    assert not missing, missing
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "(default 0)" in help_text and "(default small)" in help_text


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"kinn-ref {__version__}"


def _outputs(parser, path=()):
    """``(subcommand path, action)`` of every output argument (marked by ``add_output_argument``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _outputs(sub, path + (name,))
        elif getattr(action, "output", None):
            yield path, action


OUTPUTS = list(_outputs(build_parser()))

#: The quickest arguments of each subcommand with an output (the output itself is added by the test).
FAST_ARGV = {
    ("demo",): ["--quick", "--backend", "numpy"],
    ("train",): TRAIN[1:],
    ("solve-pde",): ["--backend", "numpy"],
    ("stability",): ["--no-plots"],
    ("golden", "export"): ["--copy"],
    ("golden", "verify"): ["--backend", "numpy", "--cases", "seed-KINNLayers"],
    ("golden", "check"): ["--impl", "docs/examples/minimal_kinn.py:adapter", "--cases", "seed-KINNLayers"],
    ("sweep",): ["--grid", "epochs=1", "--no-progress"],
    ("bench",): ["--configs", "cell", "--dtypes", "float64", "--repeats", "1", "--no-torch", "--no-memory",
                 "--no-compile"],
}

#: For folder outputs: the last file the command writes there (a folder in its place must stop the command
#: before anything else is written).
LAST_FILE = {("demo",): "results.json", ("train",): "curves.png", ("solve-pde",): "result.json",
             ("stability",): "stability.json", ("golden", "export"): "manifest.json", ("sweep",): "sweep.json"}

BAD_OUTPUTS = {"folder": ("a file", "under a file", "read-only folder", "unwritable", "a folder for a file"),
               "file": ("a folder", "under a file", "read-only folder", "unwritable")}


def _argv(path, action, target):
    where = [action.option_strings[0], str(target)] if action.option_strings else [str(target)]
    return list(path) + (where + FAST_ARGV[path] if not action.option_strings else FAST_ARGV[path] + where)


def _name(path, action):
    return " ".join(path) + " " + (action.option_strings[0] if action.option_strings else action.metavar or action.dest)


def test_every_output_argument_is_marked_and_has_fast_arguments():
    names = {"out", "json", "directory", "output", "save", "dest"}
    for name, parser, action in _options(build_parser()):
        if action.dest in names:
            assert getattr(action, "output", None) in ("folder", "file"), f"{name} {action.option_strings[0]}"
    assert {path for path, _ in OUTPUTS} == set(FAST_ARGV), "add the quickest arguments of the new command"
    assert {path for path, a in OUTPUTS if a.output == "folder"} == set(LAST_FILE)
    assert ("golden", "export") in FAST_ARGV and ("bench",) in FAST_ARGV    # positional and file outputs too


def _bad_target(tmp_path, kind, case, last_file, monkeypatch):
    """Make the bad output of ``case``; return (target, the path the message must name, files to keep)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    if case in ("a file",):
        return blocker, blocker, {blocker: "keep me"}
    if case == "under a file":
        return blocker / "below", blocker, {blocker: "keep me"}
    if case == "a folder":
        folder = tmp_path / "folder"
        folder.mkdir()
        return folder, folder, {}
    if case == "read-only folder":
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes into read-only folders (root): chmod cannot make one")
        return (folder if kind == "folder" else folder / "out.json"), folder, {}
    if case == "unwritable":     # what a read-only folder does for a user who is not root, for any user
        import kinn_ref._checks

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(kinn_ref._checks.tempfile, "mkstemp", refuse)
        target = tmp_path / ("out" if kind == "folder" else "out.json")
        return target, target, {}
    out = tmp_path / "out"
    (out / last_file).mkdir(parents=True)
    return out, out / last_file, {}


@pytest.mark.parametrize("path,action,case", [
    pytest.param(path, action, case, id=f"{_name(path, action)}: {case}")
    for path, action in OUTPUTS for case in BAD_OUTPUTS[action.output]])
def test_a_bad_output_is_one_line_naming_it_and_exit_2_before_any_work(tmp_path, capsys, monkeypatch, path, action,
                                                                        case):
    target, named, keep = _bad_target(tmp_path, action.output, case, LAST_FILE.get(path), monkeypatch)
    before = sorted(p for p in tmp_path.rglob("*"))
    assert main(_argv(path, action, target)) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"kinn-ref {path[0]}: error: ") and str(named) in err, err
    assert sorted(p for p in tmp_path.rglob("*")) == before, "the command wrote before refusing"
    assert all(p.read_text() == text for p, text in keep.items())
    if case == "read-only folder":
        (tmp_path / "read-only").chmod(0o755)


def test_default_output_folders_are_under_kinn_runs():
    for name, parser, action in _options(build_parser()):
        if action.dest == "out" and action.default is not None:
            assert str(action.default).startswith("kinn-runs"), (name, action.default)


def test_train_refuses_to_overwrite_a_run_and_extends_a_finished_one(tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")]
    assert main(TRAIN + out) == 0
    first = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    saved = (tmp_path / "run" / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main(TRAIN + out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == saved

    assert main(TRAIN[:-1] + ["4", "--resume"] + out) == 0
    assert "extended the run from 2 to 4 epochs" in capsys.readouterr().out
    extended = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    assert extended.epoch == 4 and any(not np.array_equal(extended.params[k], first.params[k]) for k in first.params)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]

    assert main(TRAIN[:-1] + ["3", "--resume"] + out) == 2
    assert "epochs must be >= 4" in capsys.readouterr().err
    assert main(TRAIN[:-1] + ["4", "--resume"] + out) == 0
    assert "nothing to train" in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_one_line(tmp_path, capsys):
    assert main(TRAIN + ["--resume", "--out", str(tmp_path / "empty")]) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_extension_continues_exactly_when_resumed_again(tmp_path):
    """An extended run is itself exactly resumable: its checkpoints record the new total."""
    from kinn_ref.training import Trainer
    from kinn_ref.tasks.registry import get_task
    task = get_task("oscillator")
    data = task.make_data("small", 0)
    config, (x, y), _ = task.model("kinn-k1", data)

    def trainer(out):
        return Trainer(config, loss="mse", lr=0.05, schedule={"kind": "cosine"}, batch_size=25, out_dir=out,
                       progress=False)

    trainer(tmp_path / "a").fit(x, y, 2)
    extended = trainer(tmp_path / "a")
    extended.fit(x, y, 4, resume=True)
    assert extended.extended_from == 2 and extended.epoch == 4
    again = trainer(tmp_path / "a")
    with pytest.warns(UserWarning, match="nothing to train"):
        again.fit(x, y, 4, resume=True)
    assert again.extended_from is None
    with pytest.raises(ValueError, match="epochs must be >= 4"):
        trainer(tmp_path / "a").fit(x, y, 3, resume=True)
    assert "Trainer(" in repr(extended) and "epoch=4" in repr(extended) and "lr=0.05" in repr(extended)


def test_library_warnings_are_one_line_notes(tmp_path, capsys):
    out = ["--out", str(tmp_path / "run")]
    assert main(TRAIN + out) == 0
    capsys.readouterr()
    assert main(TRAIN + ["--resume"] + out) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "nothing to train" in line]
    assert len(notes) == 1 and notes[0].startswith("kinn-ref train: warning: the run in ")


def test_other_packages_warnings_keep_their_own_format(capsys):
    from kinn_ref.cli import _show_warning
    _show_warning("train", UserWarning("from elsewhere"), UserWarning, "/elsewhere/mod.py", 3)
    err = capsys.readouterr().err
    assert "mod.py:3: UserWarning: from elsewhere" in err and "kinn-ref train" not in err


def test_commands_table_matches_the_parser():
    parser = build_parser()
    assert set(parser._subparsers._group_actions[0].choices) == set(COMMANDS)


def test_an_interrupted_run_resumed_with_a_smaller_total_says_so(tmp_path, capsys, monkeypatch):
    from kinn_ref.training.metrics_log import MetricsLog
    append = MetricsLog.append

    def interrupt_after_epoch_2(self, record):
        append(self, record)
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    out = ["--out", str(tmp_path / "run")]
    monkeypatch.setattr(MetricsLog, "append", interrupt_after_epoch_2)
    assert main(TRAIN[:-1] + ["4"] + out) == 130
    monkeypatch.setattr(MetricsLog, "append", append)
    capsys.readouterr()
    assert main(TRAIN[:-1] + ["3", "--resume"] + out) == 0
    captured = capsys.readouterr()
    assert "kinn-ref train: warning: shortened the run in " in captured.err
    assert "from 4 to 3 epochs" in captured.err and "shortened" not in captured.out
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz").epoch == 3


def test_a_tape_too_large_for_memory_is_one_line_naming_checkpoint_every(tmp_path, capsys, monkeypatch):
    from kinn_ref import tape_memory
    monkeypatch.setattr(tape_memory, "SMALL_TAPE_BYTES", 0)
    monkeypatch.setattr(tape_memory, "available_memory", lambda: 4096)
    assert main(TRAIN + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kinn-ref train: error: the forward pass needs about")
    assert "checkpoint_every" in err


@pytest.mark.parametrize("dt,message", [
    ("-1", "--dt must be a finite number > 0, got -1.0"),
    ("0", "--dt must be a finite number > 0, got 0.0"),
    ("nan", "--dt must be a finite number > 0, got nan"),
    ("1e-320", "--dt must be at least 2.225e-308"),
    ("1e-300", "--dt 1e-300 is too small for --t-end 0.1"),
    ("0.03", "--dt 0.03 does not divide --t-end 0.1 into a whole number of steps (--t-end / --dt = 3.33333); "
             "the nearest --dt that does is 0.0333333 (3 steps)"),
])
def test_solve_pde_never_substitutes_a_dt(tmp_path, capsys, dt, message):
    out = tmp_path / "out"
    assert main(["solve-pde", "--backend", "numpy", f"--dt={dt}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("kinn-ref solve-pde: error: ") and message in err, err
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "demo"])
def test_a_negative_seed_is_named(tmp_path, capsys, command):
    assert main([command, "--seed", "-1", "--backend", "numpy", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kinn-ref {command}: error: --seed must be an integer >= 0 or a numpy.random.Generator, got -1"
    assert not (tmp_path / "out").exists()
