"""`deit teacher-labels` then `deit train --teacher-labels`: the same weights, bit for bit, as the teacher per step;
a label folder that does not match the run refused in one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import FAST, TINY_STUDENT, make_image_folder, run_cli

# Two short epochs with an lr that moves the weights (the default, scaled to a batch of 16, barely does).
SHORT = [*TINY_STUDENT, *FAST, "--max-steps-per-epoch", "2", "--epochs", "2", "--lr", "0.01", "--unscale-lr"]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoint.pth", map_location="cpu", weights_only=False)["model"]


def _identical(first: Path, second: Path) -> bool:
    a, b = _weights(first), _weights(second)
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def _per_step_and_replayed(tmp_path: Path, capsys, flags: list, labels_flags: tuple = ()) -> tuple[Path, Path, str]:
    """(the run with the teacher per step, the run replaying its labels, the replayed run's output)."""
    labels, per_step, replayed = tmp_path / "labels", tmp_path / "per_step", tmp_path / "replayed"
    code, out, err = run_cli(["teacher-labels", "--output", labels, *flags, *labels_flags], capsys)
    assert code == 0, err
    assert "teacher labels:" in out
    code, _, err = run_cli(["train", *flags, "--seeded-stream", "--output_dir", per_step], capsys)
    assert code == 0, err
    no_path = [flag for i, flag in enumerate(flags) if flag != "--teacher-path" and flags[i - 1] != "--teacher-path"]
    code, out, err = run_cli(["train", *no_path, "--teacher-labels", labels, "--output_dir", replayed], capsys)
    assert code == 0, err
    return per_step, replayed, out


def _digits(teacher: Path, kind: str, *extra: str) -> list:
    return [*SHORT, "--distillation-type", kind, "--teacher-model", "resnet10t", "--teacher-path", teacher, *extra]


def test_hard_replay_trains_the_same_weights_as_the_teacher_per_step(tmp_path, capsys, teacher_checkpoint) -> None:
    # DIGITS through the per-image path: padded crop, flip, RandAugment, random erasing, mixup and cutmix.
    per_step, replayed, out = _per_step_and_replayed(tmp_path, capsys, _digits(teacher_checkpoint, "hard"))
    assert "teacher: replayed from" in out and "not exact" not in out
    assert _identical(per_step, replayed)
    # The teacher's term did something: without it the same stream trains other weights.
    plain = tmp_path / "plain"
    code, _, err = run_cli(["train", *SHORT, "--seeded-stream", "--output_dir", plain], capsys)
    assert code == 0, err
    assert not _identical(per_step, plain)


def test_soft_replay_with_every_logit_is_exact(tmp_path, capsys, teacher_checkpoint) -> None:
    flags = _digits(teacher_checkpoint, "soft", "--distillation-tau", "2")
    per_step, replayed, out = _per_step_and_replayed(tmp_path, capsys, flags)
    assert "every logit per sample" in out
    assert _identical(per_step, replayed)


def test_in_memory_path_replays_exactly(tmp_path, capsys, teacher_checkpoint) -> None:
    flags = _digits(teacher_checkpoint, "hard", "--aa", "none", "--color-jitter", "0", "--data-loader", "memory")
    per_step, replayed, out = _per_step_and_replayed(tmp_path, capsys, flags)
    assert "--data-loader memory" in out
    assert _identical(per_step, replayed)


def test_image_folder_with_random_resized_crop_replays_exactly(tmp_path, capsys) -> None:
    # 40 px: RandomResizedCrop (not the small-image crop), RandAugment, random erasing, mixup and cutmix.
    data = make_image_folder(tmp_path / "data", classes=2, per_class=8)
    folder = ["--data-set", "IMAGEFOLDER", "--data-path", data, "--input-size", "40"]
    teacher = tmp_path / "teacher"
    code, _, err = run_cli(
        ["train", "--model", "resnet10t", *FAST, *folder, "--epochs", "1", "--no-model-ema", "--output_dir", teacher],
        capsys,
    )
    assert code == 0, err
    flags = [*SHORT, *folder, "--batch-size", "4", "--distillation-type", "hard", "--teacher-model", "resnet10t"]
    flags += ["--teacher-path", teacher / "checkpoint.pth"]
    per_step, replayed, _ = _per_step_and_replayed(tmp_path, capsys, flags)
    assert _identical(per_step, replayed)


def test_topk_soft_labels_say_they_are_not_exact(tmp_path, capsys, teacher_checkpoint) -> None:
    flags = _digits(teacher_checkpoint, "soft")
    _, _, out = _per_step_and_replayed(tmp_path, capsys, flags, labels_flags=("--top-k", "3"))
    assert "the top 3 logits per sample" in out
    assert "teacher: not exact: the other 7 classes share their probability mass evenly" in out


@pytest.fixture(scope="module")
def labels(tmp_path_factory, teacher_checkpoint) -> Path:
    folder = tmp_path_factory.mktemp("labels") / "hard"
    from deit.cli import main

    torch.set_num_threads(1)
    assert main([str(a) for a in ["teacher-labels", "--output", folder, *_digits(teacher_checkpoint, "hard")]]) == 0
    return folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--seed", "1"], "--seed: the labels were computed with 0, this run has 1"),
        (["--batch-size", "8"], "--batch-size: the labels were computed with 16, this run has 8"),
        (["--train-subset", "0.5"], "the training data: the labels were computed with"),
        (["--mixup", "0"], "--mixup: the labels were computed with 0.8, this run has 0.0"),
        (["--teacher-model", "resnet18"], "--teacher-model: the labels were computed with 'resnet10t'"),
        (["--epochs", "3"], "covers 2 epochs, this run has --epochs 3"),
        (["--distillation-type", "soft"], "holds hard labels"),
    ],
)
def test_a_label_folder_for_another_run_is_refused_in_one_line(tmp_path, capsys, labels, change, message) -> None:
    flags = [*SHORT, "--distillation-type", "hard", "--teacher-model", "resnet10t", *change]
    code, _, err = run_cli(["train", *flags, "--teacher-labels", labels, "--output_dir", tmp_path / "run"], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_other_world_size_and_teacher_file_are_refused(tmp_path, capsys, labels, teacher_checkpoint) -> None:
    two = tmp_path / "two_ranks"
    flags = _digits(teacher_checkpoint, "hard")
    code, _, err = run_cli(["teacher-labels", "--output", two, *flags, "--world_size", "2"], capsys)
    assert code == 0, err
    assert (two / "rank1.classes.bin").is_file()
    code, _, err = run_cli(["train", *flags, "--teacher-labels", two], capsys)
    assert code == 2 and "--world_size: the labels were computed with 2, this run has 1" in err
    other = tmp_path / "other.pth"
    other.write_bytes(Path(teacher_checkpoint).read_bytes() + b"\0")
    flags[flags.index(teacher_checkpoint)] = other
    code, _, err = run_cli(["train", *flags, "--teacher-labels", labels], capsys)
    assert code == 2 and "is not the file the labels were computed with" in err


def test_an_edited_label_file_is_refused_before_training(tmp_path, capsys, labels) -> None:
    edited = tmp_path / "edited"
    shutil.copytree(labels, edited)
    data = bytearray((edited / "rank0.classes.bin").read_bytes())
    data[3] ^= 1
    (edited / "rank0.classes.bin").write_bytes(bytes(data))
    flags = [*SHORT, "--distillation-type", "hard", "--teacher-model", "resnet10t", "--teacher-labels", edited]
    code, out, err = run_cli(["train", *flags], capsys)
    assert code == 2 and "rank0.classes.bin epoch 1 does not match its sha256" in err
    assert "epoch 1/2" not in out


def test_loaders_with_their_own_random_streams_are_refused() -> None:
    from deit.engine.config import make_config
    from deit.engine.stream import check_stream
    from deit.errors import DeitError

    with pytest.raises(DeitError, match="--teacher-labels: --data-loader dali draws its augmentation from DALI"):
        check_stream(make_config(data_loader="dali", teacher_labels="x"), [0, 1])


def test_a_resumed_replay_finishes_with_the_uninterrupted_weights(tmp_path, capsys, labels) -> None:
    flags = [*SHORT, "--distillation-type", "hard", "--teacher-model", "resnet10t", "--teacher-labels", labels]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert run_cli(["train", *flags, "--keep-every", "1", "--output_dir", whole], capsys)[0] == 0
    first_epoch = whole / "checkpoint_epoch1.pth"
    code, out, err = run_cli(["train", *flags, "--resume", first_epoch, "--output_dir", resumed], capsys)
    assert code == 0, err
    assert "epoch 1/2" not in out and "epoch 2/2" in out
    assert _identical(whole, resumed)
