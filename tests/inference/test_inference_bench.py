"""`deit bench`: positive images/s for inference and for a training step with a teacher, honest step counts."""

from __future__ import annotations

import json

import pytest
import torch

from deit.cli import main
from deit.engine import make_config
from deit.engine.step import TrainStep
from deit.inference.bench import benchmark, build_bench_step, time_steps

TINY = [
    "--model",
    "deit_tiny_distilled_patch16_224",
    "--img-size",
    "32",
    "--num-classes",
    "10",
    "--model-kwargs",
    '{"patch_size": 8, "depth": 2}',
    "--device",
    "cpu",
    "--batch-size",
    "4",
]


def _run_json(capsys: pytest.CaptureFixture[str], *flags: str) -> dict:
    assert main(["bench", *TINY, *flags, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inference_prints_positive_images_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_json(capsys, "--steps", "3", "--warmup", "1")
    assert result["mode"] == "inference" and result["runtime"] == "eager" and result["amp"] == "fp32"
    assert result["images_per_second"] > 0
    assert len(result["step_ms"]) == 3  # warm-up steps are not in the timing
    assert result["images_per_second"] == pytest.approx(4 * 1000 / result["median_ms"])


def test_human_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *TINY, "--steps", "2", "--warmup", "0"]) == 0
    line = capsys.readouterr().out
    assert "images/s" in line and "deit_tiny_distilled_patch16_224 inference" in line


def test_train_step_with_tiny_teacher(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_json(
        capsys,
        "--train",
        "--teacher-model",
        "test_resnet",
        "--distillation-type",
        "hard",
        "--steps",
        "2",
        "--warmup",
        "1",
    )
    assert result["mode"] == "train" and result["teacher"] == "test_resnet"
    assert result["distillation_type"] == "hard"
    assert result["images_per_second"] > 0 and len(result["step_ms"]) == 2


@pytest.mark.slow
def test_onnxruntime_fast_path_matches_eager(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_json(capsys, "--onnxruntime", "--steps", "2", "--warmup", "1")
    assert result["runtime"] == "onnxruntime"
    assert 0.0 <= result["parity_max_abs_diff"] <= 1e-4


def test_bad_model_kwargs_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    flags = [f if f != '{"patch_size": 8, "depth": 2}' else "{depth: 2" for f in TINY]
    assert main(["bench", *flags]) == 2
    assert "--model-kwargs" in capsys.readouterr().err


def test_teacher_without_train_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *TINY, "--teacher-model", "test_resnet"]) == 2
    assert "--train" in capsys.readouterr().err


def test_time_steps_excludes_warmup() -> None:
    calls = []
    times = time_steps(lambda: calls.append(1), steps=4, warmup=3, device=torch.device("cpu"))
    assert len(times) == 4 and len(calls) == 7 and all(t >= 0 for t in times)


TINY_CONFIG = dict(
    model="deit_tiny_distilled_patch16_224",
    input_size=32,
    batch_size=4,
    device="cpu",
    model_kwargs={"patch_size": 8, "depth": 1},
    teacher_model="test_resnet",
    distillation_type="soft",
    clip_grad=0.5,
    model_ema_decay=0.5,
)


def test_the_timed_step_is_the_engines_step_built_from_a_train_config() -> None:
    config = make_config(**TINY_CONFIG)
    step = build_bench_step(config, num_classes=5, device=torch.device("cpu"))
    assert type(step) is TrainStep  # the class the epoch loop runs, not a copy
    # what deit train configures is what runs: mixup/cutmix on, the DeiT loss with the teacher, EMA, clipping
    assert step.mixup_fn is not None and step.model_ema is not None and step.clip_grad == 0.5
    assert step.criterion.distillation_type == "soft" and step.criterion.teacher is not None
    assert type(step.optimizer).__name__ == "AdamW"
    assert step.optimizer.param_groups[0]["lr"] == pytest.approx(5e-4 * 4 / 512)
    student = step.model
    teacher_before = [p.clone() for p in step.criterion.teacher.parameters()]
    student_before = [p.clone() for p in student.parameters()]
    ema_before = [p.clone() for p in step.model_ema.module.parameters()]
    loss, updated = step(torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,)))
    assert updated and torch.isfinite(loss) and not loss.requires_grad
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, step.criterion.teacher.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(student_before, student.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(ema_before, step.model_ema.module.parameters()))


def test_a_benchmark_row_is_a_deit_train_configuration(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("clip_grad: 1.0\nmixup: 0.0\ncutmix: 0.0\nmodel_ema: false\n")
    result = _run_json(
        capsys,
        "--train",
        "--teacher-model",
        "test_resnet",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--config",
        str(config_file),
    )
    row = result["train_config"]
    assert make_config(**row).to_dict() == row  # the recorded row reads back as a deit train config
    assert row["clip_grad"] == 1.0 and row["mixup"] == 0.0 and row["model_ema"] is False
    assert row["distillation_type"] == "hard" and row["teacher_model"] == "test_resnet" and row["batch_size"] == 4


def test_fp16_on_cpu_is_refused_as_deit_train_refuses_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *TINY, "--amp", "fp16"]) == 2
    assert "--amp fp16 needs a CUDA device" in capsys.readouterr().err


def test_benchmark_api_returns_result() -> None:
    result = benchmark(
        "deit_tiny_patch16_224",
        device="cpu",
        batch_size=2,
        steps=2,
        warmup=0,
        img_size=32,
        num_classes=3,
        model_kwargs={"patch_size": 16, "depth": 1},
    )
    assert result.images_per_second > 0 and result.img_size == 32 and result.batch_size == 2
    assert "images/s" in result.summary()


def _aot_eager(model, **_: object):  # type: ignore[no-untyped-def]
    # Traces like inductor (forward and backward graphs) without generating C++, which takes a minute here.
    return torch.compile(model, backend="aot_eager", dynamic=False)


@pytest.mark.slow
def test_compiled_paths_are_checked_against_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from deit import perf

    monkeypatch.setattr(perf, "compile_model", _aot_eager)
    tiny = dict(
        device="cpu",
        batch_size=2,
        steps=1,
        warmup=0,
        img_size=32,
        num_classes=5,
        model_kwargs={"patch_size": 8, "depth": 1},
        compile=True,
    )
    inference = benchmark("deit_tiny_distilled_patch16_224", **tiny)
    assert inference.runtime == "compiled" and inference.fallback_reason is None
    assert inference.parity_max_abs_diff is not None and inference.parity_max_abs_diff <= 1e-5
    train = benchmark("deit_tiny_distilled_patch16_224", train=True, teacher_model="test_resnet", **tiny)
    assert train.runtime == "compiled" and train.parity_max_abs_diff is not None
    assert train.parity_max_abs_diff <= 1e-5  # the first compiled step's loss is the eager loss


def test_failed_compilation_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from deit import perf

    class Broken(torch.nn.Module):  # what torch.compile returns: the module, failing on its first call
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: object) -> None:
            raise RuntimeError("inductor: no working C++ compiler")

    def broken(model, **_: object):  # type: ignore[no-untyped-def]
        return Broken(model)

    monkeypatch.setattr(perf, "compile_model", broken)
    result = benchmark(
        "deit_tiny_patch16_224",
        device="cpu",
        batch_size=2,
        steps=1,
        warmup=0,
        img_size=32,
        num_classes=3,
        model_kwargs={"patch_size": 16, "depth": 1},
        compile=True,
    )
    assert result.runtime == "eager" and "no working C++ compiler" in result.fallback_reason
    assert result.images_per_second > 0
    train = benchmark(
        "deit_tiny_patch16_224",
        device="cpu",
        batch_size=2,
        steps=1,
        warmup=0,
        img_size=32,
        num_classes=3,
        model_kwargs={"patch_size": 16, "depth": 1},
        compile=True,
        train=True,
    )
    assert train.runtime == "eager" and "no working C++ compiler" in train.fallback_reason


def test_onnxruntime_int8_is_timed_and_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_json(capsys, "--onnxruntime", "--quantize", "int8", "--steps", "2", "--warmup", "1")
    assert result["runtime"] == "onnxruntime-int8" and result["quantize"] == "int8"
    assert result["images_per_second"] > 0 and result["top1_agreement"] is None


def test_int8_agreement_on_a_checkpoint(capsys: pytest.CaptureFixture[str], tiny_checkpoint, image_dataset) -> None:
    assert (
        main(
            [
                "bench",
                "--checkpoint",
                str(tiny_checkpoint),
                "--onnxruntime",
                "--quantize",
                "int8",
                "--data-set",
                "IMAGEFOLDER",
                "--data-path",
                str(image_dataset),
                "--device",
                "cpu",
                "--batch-size",
                "2",
                "--steps",
                "1",
                "--warmup",
                "0",
            ]
        )
        == 0
    )
    line = capsys.readouterr().out
    assert "top-1 agreement with fp32" in line and "/6 IMAGEFOLDER validation images" in line


def test_quantize_without_onnxruntime_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *TINY, "--quantize", "int8"]) == 2
    assert "--onnxruntime" in capsys.readouterr().err
