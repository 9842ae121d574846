"""`deit bench`: positive images/s for inference and for a training step with a teacher, honest step counts."""

from __future__ import annotations

import json

import pytest
import torch

from deit.cli import main
from deit.tools.bench import benchmark, build_train_step, time_steps

TINY = ["--model", "deit_tiny_distilled_patch16_224", "--img-size", "32", "--num-classes", "10",
        "--model-kwargs", '{"patch_size": 8, "depth": 2}', "--device", "cpu", "--batch-size", "4"]


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
    result = _run_json(capsys, "--train", "--teacher-model", "test_resnet", "--distillation-type", "hard",
                       "--steps", "2", "--warmup", "1")
    assert result["mode"] == "train" and result["teacher"] == "test_resnet"
    assert result["distillation_type"] == "hard"
    assert result["images_per_second"] > 0 and len(result["step_ms"]) == 2


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


def test_train_step_updates_student_not_teacher() -> None:
    torch.manual_seed(0)
    from deit import create_model

    student = create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, depth=1, num_classes=5)
    step = build_train_step(student, device=torch.device("cpu"), dtype=None, teacher="test_resnet",
                            distillation_type="soft", num_classes=5, batch_size=4)
    teacher_before = [p.clone() for p in step.criterion.teacher.parameters()]
    student_before = [p.clone() for p in student.parameters()]
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    expected = step.loss(images, labels)
    loss = step(images, labels)
    assert torch.isfinite(loss) and not loss.requires_grad
    assert torch.allclose(loss, expected, atol=1e-6)  # the step's loss is the pre-update loss
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, step.criterion.teacher.parameters()))
    changed = sum(not torch.equal(a, b) for a, b in zip(student_before, student.parameters()))
    assert changed == len(student_before)  # every student parameter got a gradient and moved


def test_benchmark_api_returns_result() -> None:
    result = benchmark("deit_tiny_patch16_224", device="cpu", batch_size=2, steps=2, warmup=0, img_size=32,
                       num_classes=3, model_kwargs={"patch_size": 16, "depth": 1})
    assert result.images_per_second > 0 and result.img_size == 32 and result.batch_size == 2
    assert "images/s" in result.summary()


def _aot_eager(model, **_: object):  # type: ignore[no-untyped-def]
    # Traces like inductor (forward and backward graphs) without generating C++, which takes a minute here.
    return torch.compile(model, backend="aot_eager", dynamic=False)


def test_compiled_paths_are_checked_against_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from deit import perf

    monkeypatch.setattr(perf, "compile_model", _aot_eager)
    tiny = dict(device="cpu", batch_size=2, steps=1, warmup=0, img_size=32, num_classes=5,
                model_kwargs={"patch_size": 8, "depth": 1}, compile=True)
    inference = benchmark("deit_tiny_distilled_patch16_224", **tiny)
    assert inference.runtime == "compiled" and inference.fallback_reason is None
    assert inference.parity_max_abs_diff is not None and inference.parity_max_abs_diff <= 1e-5
    train = benchmark("deit_tiny_distilled_patch16_224", train=True, teacher_model="test_resnet", **tiny)
    assert train.runtime == "compiled" and train.parity_max_abs_diff is not None
    assert train.parity_max_abs_diff <= 1e-5  # the first compiled step's loss is the eager loss


def test_failed_compilation_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from deit import perf

    def broken(model, **_: object):  # type: ignore[no-untyped-def]
        def fail(*args: object) -> None:
            raise RuntimeError("inductor: no working C++ compiler")
        return fail

    monkeypatch.setattr(perf, "compile_model", broken)
    result = benchmark("deit_tiny_patch16_224", device="cpu", batch_size=2, steps=1, warmup=0, img_size=32,
                       num_classes=3, model_kwargs={"patch_size": 16, "depth": 1}, compile=True)
    assert result.runtime == "eager" and "no working C++ compiler" in result.fallback_reason
    assert result.images_per_second > 0
    train = benchmark("deit_tiny_patch16_224", device="cpu", batch_size=2, steps=1, warmup=0, img_size=32,
                      num_classes=3, model_kwargs={"patch_size": 16, "depth": 1}, compile=True, train=True)
    assert train.runtime == "eager" and "no working C++ compiler" in train.fallback_reason


def test_onnxruntime_int8_is_timed_and_flagged(capsys: pytest.CaptureFixture[str]) -> None:
    result = _run_json(capsys, "--onnxruntime", "--quantize", "int8", "--steps", "2", "--warmup", "1")
    assert result["runtime"] == "onnxruntime-int8" and result["quantize"] == "int8"
    assert result["images_per_second"] > 0 and result["top1_agreement"] is None


def test_int8_agreement_on_a_checkpoint(capsys: pytest.CaptureFixture[str], tiny_checkpoint, image_dataset) -> None:
    assert main(["bench", "--checkpoint", str(tiny_checkpoint), "--onnxruntime", "--quantize", "int8",
                 "--data-set", "IMAGEFOLDER", "--data-path", str(image_dataset), "--device", "cpu",
                 "--batch-size", "2", "--steps", "1", "--warmup", "0"]) == 0
    line = capsys.readouterr().out
    assert "top-1 agreement with fp32" in line and "/6 IMAGEFOLDER validation images" in line


def test_quantize_without_onnxruntime_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *TINY, "--quantize", "int8"]) == 2
    assert "--onnxruntime" in capsys.readouterr().err
