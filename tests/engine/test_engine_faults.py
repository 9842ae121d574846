"""Faults lose nothing: exact resume, Ctrl-C, NaN (stop / skip), disk full, resume of another model."""

from __future__ import annotations

import errno
import importlib
from pathlib import Path

import pytest
import torch

from conftest import FAST, TINY_STUDENT, log_rows, make_image_folder, run_cli
from deit.engine import builders
from deit.engine.step import TrainStep
from deit.errors import DeitError
from deit.io import load_torch_file

train_module = importlib.import_module("deit.engine.run")  # the run's module; `deit.engine.train` is the function
# Two epochs with the paper's stochastic parts on: mixup/cutmix, RandAugment, random erasing, drop path, EMA.
TWO_EPOCHS = ["train", *TINY_STUDENT, *FAST, "--epochs", "2", "--model-ema-decay", "0.9"]


def interrupt_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int, after_batches: int) -> None:
    """Make Ctrl-C arrive in the middle of `epoch`, after some of its updates were applied."""
    real = train_module.train_one_epoch

    def interrupted(step, loader, device, this_epoch, **kwargs):
        if this_epoch != epoch:
            return real(step, loader, device, this_epoch, **kwargs)

        def batches():
            for index, batch in enumerate(loader):
                if index == after_batches:
                    raise KeyboardInterrupt
                yield batch

        return real(step, batches(), device, this_epoch, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", interrupted)


@pytest.mark.slow
def test_ctrl_c_then_resume_gives_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run_cli([*TWO_EPOCHS, "--output_dir", straight], capsys)[0] == 0

    interrupt_epoch(monkeypatch, epoch=1, after_batches=2)
    code, out, err = run_cli([*TWO_EPOCHS, "--output_dir", resumed], capsys)
    assert code == 130 and "interrupted in epoch 2" in out and "holds the last completed epoch (1)" in out
    assert load_torch_file(resumed / "checkpoint.pth")["epoch"] == 0  # the half epoch was not saved
    monkeypatch.undo()

    code, out, _ = run_cli([*TWO_EPOCHS, "--output_dir", resumed, "--resume", "auto"], capsys)
    assert code == 0, out
    expected, actual = (load_torch_file(d / "checkpoint.pth") for d in (straight, resumed))
    assert actual["epoch"] == expected["epoch"] == 1
    for part in ("model", "model_ema"):
        for key, value in expected[part].items():
            assert torch.equal(value, actual[part][key]), f"{part}.{key}"
    assert actual["optimizer"]["state"][0]["exp_avg"].equal(expected["optimizer"]["state"][0]["exp_avg"])
    assert [r["epoch"] for r in log_rows(resumed)] == [0, 1]
    assert log_rows(resumed)[1]["test_acc1"] == log_rows(straight)[1]["test_acc1"]


def test_ctrl_c_during_the_save_finishes_the_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, out, _ = run_cli([*TWO_EPOCHS, "--output_dir", tmp_path], capsys)
    assert code == 130 and len(calls) == 2
    assert load_torch_file(tmp_path / "checkpoint.pth")["epoch"] == 0
    assert not list(tmp_path.glob(".checkpoint.pth.*"))


def nan_loss_at_step(monkeypatch: pytest.MonkeyPatch, bad_step: int) -> None:
    """From outside the product: the training step's loss becomes NaN at global step `bad_step` (0-based)."""
    real, calls = TrainStep.loss, []

    def loss(self, images, targets):
        calls.append(1)
        value = real(self, images, targets)
        return value * float("nan") if len(calls) - 1 == bad_step else value

    monkeypatch.setattr(TrainStep, "loss", loss)


@pytest.mark.slow
def test_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    nan_loss_at_step(monkeypatch, 4)
    code, _, err = run_cli([*TWO_EPOCHS, "--output_dir", tmp_path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "NaN/inf in epoch 2, step 1 of the epoch (global step 4)" in err
    assert "holds the last completed epoch (1)" in err
    checkpoint = load_torch_file(tmp_path / "checkpoint.pth")
    assert checkpoint["epoch"] == 0 and all(torch.isfinite(v).all() for v in checkpoint["model"].values())


@pytest.mark.slow
def test_nan_skip_policy_drops_the_batch_and_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    nan_loss_at_step(monkeypatch, 4)
    code, out, _ = run_cli([*TWO_EPOCHS, "--output_dir", tmp_path, "--nan-policy", "skip"], capsys)
    assert code == 0 and "1 bad batches skipped" in out
    assert [r["train_skipped_steps"] for r in log_rows(tmp_path)] == [0, 1]
    checkpoint = load_torch_file(tmp_path / "checkpoint.pth")
    assert checkpoint["epoch"] == 1 and all(torch.isfinite(v).all() for v in checkpoint["model"].values())


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["errno", "torch_writer"])
def test_disk_full_keeps_the_previous_checkpoint_and_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, failure: str
) -> None:
    import shutil

    real_save, calls = torch.save, []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second epoch's save: half a file, then the disk is full
            Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
            if failure == "errno":
                raise OSError(errno.ENOSPC, "No space left on device")
            monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 4096))
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4544 vs 4432")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    code, _, err = run_cli([*TWO_EPOCHS, "--output_dir", tmp_path], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (
        f"disk full while writing checkpoint.pth in {tmp_path}; the previous checkpoint.pth (epoch 1) is intact" in err
    )
    assert load_torch_file(tmp_path / "checkpoint.pth")["epoch"] == 0
    assert not list(tmp_path.glob(".checkpoint.pth.*"))
    assert [row["epoch"] for row in log_rows(tmp_path)] == [0]  # no row for the epoch no checkpoint holds


def test_another_runtime_error_while_saving_is_not_called_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deit.engine.checkpointing import save_checkpoint

    def broken(obj, path, *args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    import shutil

    monkeypatch.setattr(torch, "save", broken)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**12, 0, 10**12))  # room left
    with pytest.raises(DeitError, match="could not write .*checkpoint.pth: PytorchStreamWriter failed"):
        save_checkpoint({}, tmp_path / "checkpoint.pth")


@pytest.mark.slow
def test_resume_from_another_model_fails_before_any_work(
    tmp_path: Path, teacher_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def no_data(*args, **kwargs):
        raise AssertionError("data sets were built before the resume check")

    monkeypatch.setattr(builders, "build_datasets", no_data)
    out_dir = tmp_path / "run"
    code, _, err = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--resume", teacher_checkpoint, "--output_dir", out_dir], capsys
    )
    assert code == 2 and "'resnet10t' checkpoint, not 'deit_tiny_distilled_patch16_224'" in err
    assert len(err.strip().splitlines()) == 1 and not out_dir.exists()


@pytest.mark.slow
def test_resume_auto_without_a_checkpoint_starts_fresh(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--resume", "auto", "--output_dir", tmp_path], capsys
    )
    assert code == 0 and "starting from scratch" in out
    code, out, _ = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--resume", "auto", "--output_dir", tmp_path], capsys
    )
    assert code == 0 and "already completed all 1 epochs" in out


def test_teacher_with_other_classes_fails_before_the_student_is_built(
    tmp_path: Path, teacher_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def no_student(*args, **kwargs):
        raise AssertionError("the student was built before the teacher check")

    monkeypatch.setattr(builders, "build_student", no_student)
    data = make_image_folder(tmp_path / "data", per_class=2)
    code, _, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--data-set",
            "IMNET",
            "--data-path",
            data,
            "--teacher-model",
            "resnet10t",
            "--teacher-path",
            teacher_checkpoint,
            "--distillation-type",
            "hard",
        ],
        capsys,
    )
    assert code == 2 and "predicts 10 classes but the data has 3" in err


@pytest.mark.parametrize("flag", ["--teacher-path", "--finetune"])
def test_a_failed_download_says_which_flag_takes_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, flag: str
) -> None:
    import socket

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    with socket.socket() as probe:  # a port on 127.0.0.1 that nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/regnety_160-a5fe301d.pth"
    source = ["--teacher-model", "resnet10t", "--distillation-type", "hard"] if flag == "--teacher-path" else []
    code, _, err = run_cli(["train", *TINY_STUDENT, *FAST, *source, flag, url], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot download {url}" in err and err.strip().endswith(f"pass the file's path as {flag}")
