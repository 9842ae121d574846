"""What short, small runs need: `--sched-on-updates` (the lr moves within an epoch), `--epoch-repeats` (a subset's
epoch as long as asked), `--checkpoint-every` (fewer synced writes), each resuming exactly; and the closing line
that says when a distilled student ended above its teacher."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_engine_memory_path import CROP_ONLY

from conftest import FAST, TINY_STUDENT, log_rows, run_cli
from deit.data.epoch_repeats import EpochRepeatSampler
from deit.errors import DeitError
from deit.models.checkpoint import load_torch_file

COMMON = ["train", *TINY_STUDENT, *FAST, *CROP_ONLY, "--distillation-type", "none", "--lr", "1e-3", "--unscale-lr"]


def test_warmup_per_update_reaches_the_peak_within_the_first_epoch(tmp_path: Path, capsys) -> None:
    # Stepped per epoch, a one-epoch warmup trains the whole first epoch at --warmup-lr; per update it ramps.
    flags = [*COMMON, "--epochs", "3", "--warmup-epochs", "1", "--max-steps-per-epoch", "4", "--train-subset", "64"]
    for name, extra in (("epoch", []), ("update", ["--sched-on-updates"])):
        code, out, _ = run_cli([*flags, *extra, "--output_dir", tmp_path / name], capsys)
        assert code == 0, out
    per_epoch, per_update = log_rows(tmp_path / "epoch"), log_rows(tmp_path / "update")
    assert per_epoch[0]["train_lr"] == pytest.approx(1e-6)  # the lr after epoch 1's last step
    # warmup done after the epoch's 4 updates: the cosine (over all 12 updates, timm's convention) at update 4
    assert per_update[0]["train_lr"] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 4 / 12)))
    assert per_update[-1]["train_lr"] == pytest.approx(1e-5)  # the cosine's floor at the last update


def test_epoch_repeats_and_per_update_schedule_resume_exactly(tmp_path: Path, capsys) -> None:
    flags = [*COMMON, "--epochs", "2", "--sched-on-updates", "--warmup-epochs", "1", "--max-steps-per-epoch", "0"]
    flags += ["--train-subset", "32", "--epoch-repeats", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, out, _ = run_cli([*flags, "--keep-every", "1", "--output_dir", straight], capsys)
    assert code == 0, out
    assert log_rows(straight)[0]["train_steps"] == 3 * 32 // 16  # three passes over 32 images, batch 16
    code, out, _ = run_cli([*flags, "--output_dir", resumed, "--resume", straight / "checkpoint_epoch1.pth"], capsys)
    assert code == 0, out
    expected, actual = (load_torch_file(d / "checkpoint.pth") for d in (straight, resumed))
    for key, value in expected["model"].items():
        assert torch.equal(value, actual["model"][key]), key
    assert log_rows(resumed)[-1]["train_lr"] == log_rows(straight)[-1]["train_lr"]


class _Shuffled:
    """A stand-in epoch-seeded sampler: a permutation of range(n) drawn from the epoch."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch)).tolist())


def test_each_pass_is_its_own_shuffle_drawn_from_the_epoch() -> None:
    sampler = EpochRepeatSampler(_Shuffled(10), 3)
    sampler.set_epoch(2)
    order = list(sampler)
    assert len(order) == len(sampler) == 30
    passes = [order[i : i + 10] for i in (0, 10, 20)]
    assert all(sorted(p) == list(range(10)) for p in passes) and len({tuple(p) for p in passes}) == 3
    inner = _Shuffled(10)
    inner.set_epoch(6)
    assert passes[0] == list(inner)
    sampler.set_epoch(2)
    assert list(sampler) == order  # the same epoch draws the same passes (a resume repeats it)
    with pytest.raises(DeitError, match="--epoch-repeats 0"):
        EpochRepeatSampler(_Shuffled(10), 0)


def test_checkpoint_every_writes_fewer_files_and_a_resume_repeats_the_run(tmp_path: Path, capsys) -> None:
    # Every 2nd epoch (and the last, and improvements): a kill loses at most one epoch, and the resumed run
    # prunes the log rows past its checkpoint and ends where the uninterrupted one does.
    flags = [*COMMON, "--epochs", "3", "--max-steps-per-epoch", "2", "--train-subset", "64", "--sched-on-updates"]
    flags += ["--checkpoint-every", "2", "--eval-interval", "3"]  # evaluated at the last epoch only: no improvement
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, out, _ = run_cli([*flags, "--keep-every", "2", "--output_dir", straight], capsys)
    assert code == 0, out
    assert load_torch_file(straight / "checkpoint.pth")["epoch"] == 2  # the last epoch's state (0-based)
    assert load_torch_file(straight / "checkpoint_epoch2.pth")["epoch"] == 1
    code, out, _ = run_cli([*flags, "--output_dir", resumed, "--resume", straight / "checkpoint_epoch2.pth"], capsys)
    assert code == 0, out
    expected, actual = (load_torch_file(d / "checkpoint.pth") for d in (straight, resumed))
    for key, value in expected["model"].items():
        assert torch.equal(value, actual["model"][key]), key
    assert log_rows(resumed)[-1]["train_loss"] == log_rows(straight)[-1]["train_loss"]


def test_checkpoint_every_skips_the_write_between_its_epochs(tmp_path: Path, capsys, monkeypatch) -> None:
    from deit.engine import run as engine_run

    written: list[int] = []
    original = engine_run._save_epoch
    monkeypatch.setattr(
        engine_run, "_save_epoch", lambda run, epoch, improved: (written.append(epoch), original(run, epoch, improved))
    )
    flags = [*COMMON, "--epochs", "5", "--max-steps-per-epoch", "1", "--train-subset", "32", "--eval-interval", "5"]
    code, out, _ = run_cli([*flags, "--checkpoint-every", "2", "--output_dir", tmp_path / "run"], capsys)
    assert code == 0, out
    assert written == [1, 3, 4]  # epochs 2 and 4 (1-based), and the last


def test_a_student_above_its_teacher_is_told_so() -> None:
    from deit.engine.run_report import teacher_note

    note = teacher_note({"acc1": 65.28, "teacher_acc1": 63.33})
    assert note is not None and "student (65.28%) ended above its teacher (63.33%)" in note
    assert teacher_note({"acc1": 60.0, "teacher_acc1": 63.33}) is None
    assert teacher_note({"acc1": 60.0}) is None  # no teacher
