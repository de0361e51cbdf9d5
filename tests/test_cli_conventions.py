"""What a user of the command line can expect of every command: documented defaults, one-line errors with
exit status 2, output folders checked before any work, runs never overwritten, finished runs extended."""
import argparse
import json

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


@pytest.mark.parametrize("command", ["train", "stability"])
def test_out_that_is_a_file_is_one_line_and_exit_2(tmp_path, capsys, command):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    argv = {"train": TRAIN, "stability": ["stability", "--no-plots"]}[command]
    for out in (blocker, blocker / "below"):
        assert main(argv + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "--out" in err and "file" in err, err
    assert blocker.read_text() == "keep me"


def test_golden_export_into_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["golden", "export", str(blocker), "--cases", "none-euler-last*"]) == 2
    assert "DIR must be a folder" in capsys.readouterr().err


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
