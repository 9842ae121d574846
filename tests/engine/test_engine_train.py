"""`deit train` / `deit eval` end to end, in this process: outputs, distillation, folders, eval, fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FAST, TINY_STUDENT, log_rows, make_image_folder, run_cli
from deit.io import load_torch_file
from deit.models.factory import load_trained_model
from deit.models.registry import IMAGENET_MEAN
from inat_layout import write_inat_layout


def test_teacher_run_writes_every_output(teacher_checkpoint: Path) -> None:
    run_dir = teacher_checkpoint.parent
    for name in ("config.yaml", "checkpoint.pth", "best_checkpoint.pth", "log.txt", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = load_torch_file(teacher_checkpoint)
    assert {"model", "optimizer", "lr_scheduler", "epoch", "args", "meta", "rng", "best_acc"} <= set(checkpoint)
    assert "model_ema" not in checkpoint and checkpoint["epoch"] == 0
    meta = checkpoint["meta"]
    assert meta["model"] == "resnet10t" and meta["num_classes"] == 10 and meta["input_size"] == 32
    assert meta["class_names"] == [str(d) for d in range(10)] and not meta["distilled"]
    assert checkpoint["args"]["model"] == "resnet10t" and isinstance(checkpoint["args"], dict)
    rows = log_rows(run_dir)
    assert [r["epoch"] for r in rows] == [0] and {"train_loss", "test_acc1", "test_acc5"} <= set(rows[0])


@pytest.mark.slow
def test_distilled_student_follows_the_teacher_in_its_dist_head(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    # The contract of hard distillation: the dist head is trained on the teacher's argmax, the class head on the
    # labels, so the dist head agrees with the teacher far more. The fixture's teacher (3 steps) is strongly
    # biased (top-1 ~11%, one class on ~94% of the test images), which makes the gap large; over seeds 0-15 this
    # run gave dist 93.6-94.4% vs cls 0-37% agreement (seed 2: 94.4 vs 89.7). 20 steps at an unscaled lr, no
    # mixup (which blurs the teacher's labels), official smoothing / random erasing / drop-path.
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--max-steps-per-epoch",
            "20",
            "--output_dir",
            tmp_path,
            "--data-set",
            "DIGITS",
            "--teacher-model",
            "resnet10t",
            "--teacher-path",
            teacher_checkpoint,
            "--distillation-type",
            "hard",
            "--distillation-alpha",
            "0.5",
            "--lr",
            "2e-3",
            "--unscale-lr",
            "--smoothing",
            "0.1",
            "--mixup",
            "0",
            "--cutmix",
            "0",
            "--reprob",
            "0.25",
            "--drop-path",
            "0.1",
            "--seed",
            "0",
        ],
        capsys,
    )
    assert code == 0, out
    row = log_rows(tmp_path)[0]
    assert row["test_dist_teacher_agreement"] >= 80.0, row
    assert row["test_dist_teacher_agreement"] > row["test_cls_teacher_agreement"], row
    assert "dist head" in out and "agreement" in out and "untrained" not in out  # hard: both heads learn
    checkpoint = load_torch_file(tmp_path / "checkpoint.pth")
    assert checkpoint["meta"]["distilled"] and "model_ema" in checkpoint
    assert checkpoint["args"]["distillation_type"] == "hard"


@pytest.mark.slow
def test_eval_resume_and_deit_eval_agree(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    # --distillation-type none (the default) on a distilled student: its distillation head never learns, so
    # every printed fused number says it averages that head in, and the class head's number comes first.
    untrained = "untrained under --distillation-type none"
    code, out, _ = run_cli(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--output_dir", run_dir], capsys)
    assert code == 0 and untrained in out and "| class head top-1" in out and "| best fused " in out
    logged = log_rows(run_dir)[0]["test_acc1"]
    code, out, _ = run_cli(["train", *TINY_STUDENT, *FAST, "--eval", "--resume", run_dir / "checkpoint.pth"], capsys)
    assert code == 0 and f"test images: {logged:.1f}% (fused with the untrained distillation head" in out
    assert untrained in out
    code, out, _ = run_cli(
        [
            "eval",
            "--checkpoint",
            run_dir / "checkpoint.pth",
            "--num_workers",
            "0",
            "--output",
            tmp_path / "eval",
            "--teacher-model",
            "resnet10t",
            "--teacher-path",
            teacher_checkpoint,
        ],
        capsys,
    )
    assert code == 0 and "dist head" in out and "agreement" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["acc1"] == pytest.approx(logged) and metrics["num_images"] == 360
    assert metrics["dist_head_untrained"] and untrained in out.splitlines()[1]
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.sum() == 360
    assert Image.open(tmp_path / "eval" / "confusion_matrix.png").size[0] > 100
    # Per class: scikit-learn's report agrees with the confusion matrix counted apart, and is printed.
    report = metrics["classification_report"]
    for k, name in enumerate(metrics["class_names"]):
        assert report[name]["support"] == matrix[k].sum()
        assert report[name]["recall"] == pytest.approx(matrix[k, k] / max(matrix[k].sum(), 1))
        assert report[name]["precision"] == pytest.approx(matrix[k, k] / max(matrix[:, k].sum(), 1))
    assert "precision" in out and "weighted avg" in out
    # The worst mistakes: wrong, most confident first, with the teacher's call; drawn as a contact sheet.
    mistakes = metrics["worst_mistakes"]
    assert len(mistakes) == min(16, 360 - np.trace(matrix)) > 0
    assert all(row["true"] != row["predicted"] and "teacher" in row for row in mistakes)
    assert [row["confidence"] for row in mistakes] == sorted((row["confidence"] for row in mistakes), reverse=True)
    assert "most confident mistakes: #" in out and "worst_mistakes.png" in out
    assert Image.open(tmp_path / "eval" / "worst_mistakes.png").size[0] > 100


@pytest.mark.slow
def test_one_epoch_on_a_generated_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = make_image_folder(tmp_path / "data")
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--data-set",
            "IMNET",
            "--data-path",
            data,
            "--batch-size",
            "8",
            "--output_dir",
            tmp_path / "run",
        ],
        capsys,
    )
    assert code == 0, out
    meta = load_torch_file(tmp_path / "run" / "checkpoint.pth")["meta"]
    assert meta["class_names"] == ["class_0", "class_1", "class_2"] and meta["mean"] == list(IMAGENET_MEAN)
    assert log_rows(tmp_path / "run")[0]["test_num_images"] == 6


@pytest.mark.slow
def test_data_path_alone_trains_on_that_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # The official README's command names no --data-set: the official default (IMNET) reads the folder.
    data = make_image_folder(tmp_path / "data")
    code, out, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--data-path",
            data,
            "--batch-size",
            "8",
            "--output_dir",
            tmp_path / "run",
        ],
        capsys,
    )
    assert code == 0, err
    assert out.splitlines()[0] == f"data: IMNET from {data.resolve()}"
    checkpoint = load_torch_file(tmp_path / "run" / "checkpoint.pth")
    assert checkpoint["meta"]["class_names"] == ["class_0", "class_1", "class_2"]
    assert checkpoint["args"]["data_set"] == "IMNET"  # recorded resolved, so `deit eval` finds it again
    assert log_rows(tmp_path / "run")[0]["test_num_images"] == 6
    code, out, _ = run_cli(["train", *TINY_STUDENT, *FAST, "--eval"], capsys)  # no data named: the digits
    assert code == 0 and out.splitlines()[0] == "data: DIGITS (embedded, offline)" and "360 test images" in out


@pytest.mark.slow
def test_deit_eval_of_weights_alone_normalises_like_train_eval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # One attention head: what `deit eval` assumes when weights alone do not tell (the other sizes they do).
    student = [
        "--model",
        "deit_tiny_distilled_patch16_224",
        "--input-size",
        "32",
        "--model-kwargs",
        '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 1}',
    ]
    run_dir = tmp_path / "run"
    assert run_cli(["train", *student, *FAST, "--epochs", "1", "--output_dir", run_dir], capsys)[0] == 0
    weights = tmp_path / "weights.pth"
    torch.save({"model": load_torch_file(run_dir / "checkpoint.pth")["model"]}, weights)  # no meta, no args
    code, out, _ = run_cli(["train", *student, *FAST, "--eval", "--resume", weights], capsys)
    assert code == 0
    train_eval = out.strip().splitlines()[-1]
    # Weights alone do not say how the distillation head was trained: no claim that it is untrained.
    assert train_eval.startswith("fused top-1") and "untrained" not in out
    code, out, _ = run_cli(
        [
            "eval",
            "--checkpoint",
            weights,
            "--data-set",
            "DIGITS",
            "--batch-size",
            "24",
            "--num_workers",
            "0",
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0
    # Same images, same normalisation (DIGITS' own), same batches: the same metrics line, loss included.
    assert out.strip().splitlines()[1] == train_eval


@pytest.mark.slow
def test_finetune_to_a_larger_input_with_a_teacher(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    source = tmp_path / "at32"
    assert run_cli(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--output_dir", source], capsys)[0] == 0
    student = ["--model", "deit_tiny_distilled_patch16_224", "--model-kwargs", TINY_STUDENT[3]]
    code, out, _ = run_cli(
        [
            "train",
            *student,
            *FAST,
            "--input-size",
            "48",
            "--epochs",
            "1",
            "--finetune",
            source / "checkpoint.pth",
            "--teacher-model",
            "resnet10t",
            "--teacher-path",
            teacher_checkpoint,
            "--distillation-type",
            "hard",
            "--output_dir",
            tmp_path / "at48",
        ],
        capsys,
    )
    assert code == 0, out
    model, meta = load_trained_model(tmp_path / "at48" / "checkpoint.pth")
    assert meta.input_size == 48 and model.pos_embed.shape[1] == 2 + 36
    # Started from the 32-pixel weights (three tiny steps since), not from a fresh initialisation.
    original = load_torch_file(source / "checkpoint.pth")["model"]
    tuned = model.state_dict()
    assert (tuned["blocks.0.mlp.fc1.weight"] - original["blocks.0.mlp.fc1.weight"]).abs().max() < 1e-3
    assert tuned["pos_embed"][:, :2].sub(original["pos_embed"][:, :2]).abs().max() < 1e-3  # tokens kept


@pytest.mark.slow
def test_attn_only_freezes_the_mlp(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "base"
    assert run_cli(["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--output_dir", source], capsys)[0] == 0
    code, _, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--finetune",
            source / "checkpoint.pth",
            "--attn-only",
            "--output_dir",
            tmp_path / "ft",
        ],
        capsys,
    )
    assert code == 0
    before = load_torch_file(source / "checkpoint.pth")["model"]
    after = load_torch_file(tmp_path / "ft" / "checkpoint.pth")["model"]
    assert torch.equal(before["blocks.0.mlp.fc1.weight"], after["blocks.0.mlp.fc1.weight"])
    assert not torch.equal(before["blocks.0.attn.qkv.weight"], after["blocks.0.attn.qkv.weight"])


@pytest.mark.slow
def test_compile_covers_the_student_and_the_teacher(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deit.perf

    compiled = []
    real_compile = deit.perf.compile_model

    def compile_quickly(model, **kwargs):  # aot_eager: the same graph capture, without inductor's minute on CPU
        compiled.append(type(model).__name__)
        return real_compile(model, **{**kwargs, "backend": "aot_eager"})

    monkeypatch.setattr(deit.perf, "compile_model", compile_quickly)
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--output_dir",
            tmp_path,
            "--teacher-model",
            "resnet10t",
            "--teacher-path",
            teacher_checkpoint,
            "--distillation-type",
            "hard",
            "--compile",
            "--no-model-ema",
        ],
        capsys,
    )
    assert code == 0, out
    assert compiled == ["VisionTransformer", "ResNet"]
    # The checkpoint holds the plain module's keys, not the compiled wrapper's `_orig_mod.` ones.
    state = load_torch_file(tmp_path / "checkpoint.pth")["model"]
    assert "cls_token" in state and not any(key.startswith("_orig_mod") for key in state)


@pytest.mark.slow
def test_eval_interval_evaluates_every_nth_and_the_last_epoch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "3",
            "--eval-interval",
            "2",
            "--distillation-type",
            "labels",
            "--output_dir",
            tmp_path,
        ],
        capsys,
    )
    assert code == 0, out
    rows = log_rows(tmp_path)
    assert [r["epoch"] for r in rows] == [0, 1, 2]  # a checkpoint and a train row every epoch
    assert ["test_acc1" in r for r in rows] == [False, True, True]
    assert "epoch 1/3: train loss" in out and "not evaluated" in out
    assert load_torch_file(tmp_path / "checkpoint.pth")["epoch"] == 2 and (tmp_path / "curves.png").is_file()


@pytest.mark.slow
def test_eval_interval_does_not_change_what_is_trained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # Evaluating draws no random numbers from the training's stream, so the weights are the same either way.
    weights = []
    for interval in ("1", "3"):
        code, out, _ = run_cli(
            [
                "train",
                *TINY_STUDENT,
                *FAST,
                "--epochs",
                "3",
                "--eval-interval",
                interval,
                "--distillation-type",
                "labels",
                "--output_dir",
                tmp_path / interval,
            ],
            capsys,
        )
        assert code == 0, out
        weights.append(load_torch_file(tmp_path / interval / "checkpoint.pth")["model"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_eval_interval_is_refused_with_the_plateau_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(
        ["train", *TINY_STUDENT, *FAST, "--eval-interval", "2", "--sched", "plateau", "--output_dir", tmp_path], capsys
    )
    assert code != 0 and "--eval-interval 2 with --sched plateau" in err and len(err.strip().splitlines()) == 1


def test_inat19_json_layout_trains_at_a_category_level_and_evaluates(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = write_inat_layout(tmp_path / "inat", shape=(32, 32), mark_class=True)
    code, out, _ = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--epochs",
            "1",
            "--data-set",
            "INAT19",
            "--data-path",
            data,
            "--inat-category",
            "genus",
            "--batch-size",
            "4",
            "--output_dir",
            tmp_path / "run",
        ],
        capsys,
    )
    assert code == 0, out
    assert "INAT19: 8 train / 4 val images, 2 classes" in out  # genus: 4 species in 2 genera
    checkpoint = load_torch_file(tmp_path / "run" / "checkpoint.pth")
    assert checkpoint["meta"]["class_names"] == ["genus_1", "genus_0"]  # the official first-appearance order
    code, out, _ = run_cli(
        ["eval", "--checkpoint", tmp_path / "run" / "checkpoint.pth", "--num_workers", "0"], capsys
    )  # data set, path and level all from the checkpoint
    assert code == 0 and "on INAT19 (4 images)" in out and "genus_0" in out
    # A class-folder INAT tree has one granularity: another level is refused before anything runs.
    folders = make_image_folder(tmp_path / "folders", classes=2, per_class=2)
    code, _, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--data-set",
            "INAT",
            "--data-path",
            folders,
            "--inat-category",
            "genus",
            "--output_dir",
            tmp_path / "run2",
        ],
        capsys,
    )
    assert code == 2 and "--inat-category: this INAT --data-path has no train2018.json" in err
    inat18 = write_inat_layout(tmp_path / "inat18", year=2018)
    code, _, err = run_cli(
        [
            "train",
            *TINY_STUDENT,
            *FAST,
            "--data-set",
            "INAT",
            "--data-path",
            inat18,
            "--data-loader",
            "dali",
            "--output_dir",
            tmp_path / "run3",
        ],
        capsys,
    )
    assert code == 2 and "--data-loader dali reads class folders" in err  # not the JSON layout


def test_an_official_deit3_name_trains_and_reloads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    kwargs = '{"depth": 1, "embed_dim": 32, "num_heads": 2, "patch_size": 8}'
    tiny = ["--model", "deit_small_patch16_LS", "--model-kwargs", kwargs, "--input-size", "32"]
    code, out, _ = run_cli(["train", *tiny, *FAST, "--epochs", "1", "--output_dir", tmp_path], capsys)
    assert code == 0, out
    model, meta = load_trained_model(tmp_path / "checkpoint.pth")
    assert meta.model == "deit_small_patch16_LS" and model.pos_embed.shape[1] == 16  # DeiT III: patches only
    assert model.blocks[0].ls1.gamma.shape == (32,)


def test_the_students_initial_weights_depend_on_the_seed_alone_not_on_a_teacher(
    tmp_path: Path, teacher_checkpoint: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo pairs students by seed: loading a teacher (whose construction draws throw-away initial weights)
    # must not move the student's draw.
    from deit.engine import builders

    initial: list[dict[str, torch.Tensor]] = []
    build = builders.build_student_with_origin

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        model, origin = build(*args, **kwargs)
        initial.append({name: value.clone() for name, value in model.state_dict().items()})
        return model, origin

    monkeypatch.setattr(builders, "build_student_with_origin", recording)
    common = ["train", *TINY_STUDENT, *FAST, "--epochs", "1", "--max-steps-per-epoch", "1", "--seed", "5"]
    teacher = ["--teacher-model", "resnet10t", "--teacher-path", teacher_checkpoint]
    for name, extra in (
        ("labels", ["--distillation-type", "labels"]),
        ("soft", ["--distillation-type", "soft", *teacher]),
    ):
        code, out, _ = run_cli([*common, *extra, "--output_dir", tmp_path / name], capsys)
        assert code == 0, out
    labels_only, with_teacher = initial
    for name, value in labels_only.items():
        torch.testing.assert_close(with_teacher[name], value, rtol=0, atol=0, msg=name)
