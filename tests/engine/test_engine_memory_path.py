"""`deit train` on the in-memory path: announced in the first lines, automatic where it applies, refused with
the flag named where it cannot reproduce the recipe, resumable, and with a teacher table that the run uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import FAST, TINY_STUDENT, log_rows, make_image_folder, run_cli
from deit.models.checkpoint import load_torch_file

# The demo's recipe: the small-image crop alone, so the in-memory path applies.
CROP_ONLY = [
    "--data-set",
    "DIGITS",
    "--aa",
    "none",
    "--color-jitter",
    "0",
    "--reprob",
    "0",
    "--mixup",
    "0",
    "--cutmix",
    "0",
    "--no-repeated-aug",
    "--no-model-ema",
    "--hflip",
    "0",
]


def test_auto_picks_memory_for_the_crop_recipe_and_torch_for_randaugment(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = run_cli(
        ["train", *TINY_STUDENT, *FAST, *CROP_ONLY, "--epochs", "1", "--output_dir", tmp_path / "memory"], capsys
    )
    assert code == 0, out
    assert "--data-loader memory: 1437 training images decoded once" in out
    assert "validation: 360 images transformed once and kept" in out  # and evaluated from that tensor
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            *CROP_ONLY,
            "--aa",
            "rand-m9-mstd0.5-inc1",
            "--epochs",
            "1",
            "--output_dir",
            tmp_path / "torch",
        ],
        capsys,
    )
    assert code == 0, out
    assert "--data-loader auto: per-image DataLoader, not the in-memory path (--aa rand-m9-mstd0.5-inc1" in out
    assert "validation:" not in out  # a per-image run keeps its per-image evaluation loader


def test_memory_asked_for_with_randaugment_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            *CROP_ONLY,
            "--data-loader",
            "memory",
            "--aa",
            "rand-m9-mstd0.5-inc1",
            "--epochs",
            "1",
            "--output_dir",
            tmp_path,
        ],
        capsys,
    )
    assert code != 0 and "--data-loader memory: --aa rand-m9-mstd0.5-inc1" in err and "Traceback" not in err


def test_resumed_epoch_repeats_the_uninterrupted_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Random erasing on: its draws, too, must come out the same after the resume.
    common = ["train", *TINY_STUDENT, *FAST, *CROP_ONLY, "--data-loader", "memory", "--hflip", "0.5", "--epochs", "2"]
    common += ["--reprob", "0.25", "--remode", "pixel", "--recount", "2"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, out, _ = run_cli([*common, "--keep-every", "1", "--output_dir", straight], capsys)
    assert code == 0 and "normalisation and random erasing (p=0.25) per batch" in out
    code, out, _ = run_cli([*common, "--output_dir", resumed, "--resume", straight / "checkpoint_epoch1.pth"], capsys)
    assert code == 0, out
    expected, actual = (load_torch_file(d / "checkpoint.pth") for d in (straight, resumed))
    for key, value in expected["model"].items():
        assert torch.equal(value, actual["model"][key]), key
    assert log_rows(resumed)[-1]["train_loss"] == log_rows(straight)[-1]["train_loss"]


def test_the_teacher_table_is_announced_shared_and_trains_as_the_per_step_teacher(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    common = [
        "train",
        *TINY_STUDENT,
        *FAST,
        *CROP_ONLY,
        "--data-loader",
        "memory",
        "--epochs",
        "1",
        "--teacher-model",
        "resnet10t",
        "--teacher-path",
        teacher_checkpoint,
        "--distillation-type",
        "soft",
        "--max-steps-per-epoch",
        "2",
        "--train-subset",
        "40",
    ]
    tables = tmp_path / "tables"
    code, out, _ = run_cli([*common, "--teacher-table-dir", tables, "--output_dir", tmp_path / "table"], capsys)
    assert code == 0, out
    assert "teacher: looked up in a table of its logits for 40 images x 81 views" in out
    assert len(list(tables.glob("teacher_table_*.safetensors"))) == 1
    code, out, _ = run_cli([*common, "--teacher-table", "off", "--output_dir", tmp_path / "per_step"], capsys)
    assert code == 0 and "teacher: one forward pass per step (--teacher-table off)" in out
    looked_up, per_step = (
        load_torch_file(tmp_path / name / "checkpoint.pth")["model"] for name in ("table", "per_step")
    )
    for key, value in per_step.items():  # same batches, same teacher logits (up to batch-size rounding)
        torch.testing.assert_close(looked_up[key], value, rtol=1e-4, atol=1e-5)
    code, out, _ = run_cli([*common, "--mixup", "0.8", "--output_dir", tmp_path / "mixup"], capsys)
    assert code == 0 and "teacher: one forward pass per step (mixup/cutmix mix images" in out
    code, out, _ = run_cli([*common, "--reprob", "0.25", "--output_dir", tmp_path / "erasing"], capsys)
    assert code == 0 and "teacher: one forward pass per step (--reprob 0.25: random erasing changes pixels" in out
    code, _, err = run_cli(
        [*common, "--reprob", "0.25", "--teacher-table", "on", "--output_dir", tmp_path / "erasing_on"], capsys
    )
    assert code != 0 and "--teacher-table on: --reprob 0.25" in err


def test_an_image_folder_trains_from_memory_at_any_size_up_to_the_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = make_image_folder(tmp_path / "images")  # 40 x 48 images
    common = ["train", *TINY_STUDENT, *FAST, *CROP_ONLY, "--data-set", "IMAGEFOLDER", "--data-path", folder]
    common += ["--epochs", "1", "--max-steps-per-epoch", "1", "--input-size", "48"]
    code, out, _ = run_cli(
        [*common, "--scale", "0.35", "1", "--ratio", "0.5", "2", "--output_dir", tmp_path / "a"], capsys
    )
    assert code == 0, out
    assert "--data-loader memory: 24 training images decoded once into one 0.1 MB uint8 tensor on cpu; " in out
    assert "RandomResizedCrop 48 (scale 0.35-1, ratio 0.5-2, bicubic), flip p=0, normalisation per batch" in out
    assert "threads: 1 torch intra-op threads (" in out and "0 loader workers" in out
    assert log_rows(tmp_path / "a")[-1]["epoch"] == 0
    # Over the cap: auto says so in one line and decodes per image; memory refuses in one line.
    code, out, _ = run_cli([*common, "--memory-cap-gib", "1e-5", "--output_dir", tmp_path / "b"], capsys)
    assert code == 0, out
    assert (
        "--data-loader auto: per-image DataLoader, not the in-memory path (24 images decoded at --input-size 48 " in out
    )
    assert "over the in-memory cap of 10.5 KB (--memory-cap-gib raises it)" in out
    code, _, err = run_cli(
        [*common, "--memory-cap-gib", "1e-5", "--data-loader", "memory", "--output_dir", tmp_path / "c"], capsys
    )
    assert code != 0 and err.count("\n") == 1 and "--data-loader memory: 24 images decoded" in err


def test_the_table_is_refused_for_random_erasing_and_for_images_of_several_shapes() -> None:
    from deit.engine.config import TrainConfig
    from deit.engine.memory_path import _table_refusal

    config = TrainConfig(
        model="deit_tiny_patch16_224", teacher_path="t.pth", reprob=0.0, mixup=0.0, cutmix=0.0, teacher_table="on"
    )
    assert _table_refusal(config, 10, 81, 3, 10) == ""
    assert "not all square" in _table_refusal(config, 10, 81, 3, 10, square=False)
    config.reprob = 0.1
    assert _table_refusal(config, 10, 81, 3, 10).startswith("--reprob 0.1: random erasing changes pixels per draw")


def test_above_32_px_the_teacher_runs_per_step_and_a_forced_table_is_refused() -> None:
    from deit.data.memory_resized import CropSettings, ResizedCropAugment
    from deit.engine.config import TrainConfig
    from deit.engine.memory_path import _teacher_table
    from deit.errors import DeitError

    augment = ResizedCropAugment(torch.zeros(4, 3, 40, 40, dtype=torch.uint8), CropSettings(32), (0.5,) * 3, (0.5,) * 3)
    config = TrainConfig(model="deit_tiny_patch16_224", teacher_path="t.pth", distillation_type="hard", reprob=0.0)
    teacher, cpu = torch.nn.Identity(), torch.device("cpu")
    table, line = _teacher_table(config, teacher, augment, 3, 4, cpu)
    assert table is None and line == (
        "teacher: one forward pass per step (RandomResizedCrop's boxes are continuous, not a finite set of views)"
    )
    config.teacher_table = "on"
    with pytest.raises(DeitError, match=r"^--teacher-table on: RandomResizedCrop's boxes are continuous"):
        _teacher_table(config, teacher, augment, 3, 4, cpu)
