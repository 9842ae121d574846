"""A run you can follow (issue 21): step lines when piped, whole-run ETA, per-step TensorBoard, curves, summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST, TINY_STUDENT, run_cli
from deit.engine import run_report
from deit.engine.config import make_config
from deit.engine.logging_utils import curve_points, plot_curves
from deit.engine.run_report import clamp_workers, effective_log_interval

# FAST without its "--log-interval 0": the default interval (50) against 3-step epochs.
PIPED = [arg for index, arg in enumerate(FAST) if arg != "--log-interval" and FAST[index - 1] != "--log-interval"]


def test_small_epochs_get_a_shorter_log_interval() -> None:
    assert effective_log_interval(50, 37) == 9  # about four lines per epoch instead of none
    assert effective_log_interval(50, 1000) == 50
    assert effective_log_interval(50, 2) == 1
    assert effective_log_interval(0, 37) == 0  # off stays off
    assert effective_log_interval(50, 0) == 50  # a loader without a length


def test_a_piped_run_shows_steps_with_a_whole_run_eta_and_ends_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert "--log-interval" not in PIPED and "--max-steps-per-epoch" in PIPED
    code, out, err = run_cli(["train", *TINY_STUDENT, *PIPED, "--epochs", "2", "--output_dir", tmp_path], capsys)
    assert code == 0, err
    lines = out.splitlines()
    steps = [line for line in lines if line.startswith("epoch 1 [")]
    assert len(steps) == 3 and all("run eta 0:" in line for line in steps)  # 3 steps // 4 → every step
    assert not any("run eta" in line for line in lines if line.startswith("epoch 2 ["))  # the last epoch: no more
    summary = lines[-1]
    assert summary.startswith("done: 2 epoch(s) in 0:00:") and "best top-1" in summary and "last top-1" in summary
    assert f"{tmp_path / 'checkpoint.pth'} (last)" in summary and str(tmp_path / "curves.png") in summary

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/step_loss")] == [1, 2, 3, 4, 5, 6]
    assert len(events.Scalars("train/step_lr")) == 6


def test_curves_count_epochs_as_the_console_and_plot_the_lr(tmp_path: Path) -> None:
    rows = [
        {"epoch": 0, "train_loss": 2.0, "train_lr": 1e-4},
        {"epoch": 1, "train_loss": 1.5, "train_lr": 5e-5, "test_acc1": 40.0},
    ]
    assert curve_points(rows, "train_loss") == [(1, 2.0), (2, 1.5)]
    assert curve_points(rows, "test_acc1") == [(2, 40.0)]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(__import__("json").dumps(row) for row in rows) + "\n")
    from PIL import Image

    with Image.open(plot_curves(log, tmp_path / "curves.png")) as image:
        assert image.size[0] == 1500  # three panels: loss, top-1, lr


def test_workers_are_clamped_to_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_report.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    clamped, message = clamp_workers(make_config(num_workers=10))
    assert clamped.num_workers == 2
    assert message == "--num_workers 10: 2 usable CPU core(s) here, so 2 loader workers"
    kept = make_config(num_workers=2)
    assert clamp_workers(kept) == (kept, None)
