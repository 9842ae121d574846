"""`deit export`: ONNX / TorchScript / safetensors files that reproduce the PyTorch model's fused logits."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import deit.export.exporter as export_module
from deit.cli import main
from deit.errors import DeitError
from deit.export.exporter import export
from deit.models.factory import load_trained_model
from tiny_checkpoints import CLASS_NAMES, TINY_SIZE


def _reference(checkpoint: Path, batch: int) -> tuple[torch.Tensor, np.ndarray]:
    model, _ = load_trained_model(checkpoint)
    images = torch.randn(batch, 3, TINY_SIZE, TINY_SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        # The same arithmetic as the model's forward (prefix-only last block), so a bit-exact round trip can be
        # asserted; the fused logits are computed here, not by the exported graph.
        cls_logits, dist_logits = model.head_logits(model.forward_prefix_features(images))
    return images, ((cls_logits + dist_logits) / 2).numpy()


@pytest.mark.slow
def test_onnx_export_has_a_dynamic_batch_and_matches_pytorch(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import onnxruntime

    output = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "max |diff|" in printed and "OK" in printed
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    assert not isinstance(session.get_inputs()[0].shape[0], int)  # symbolic batch axis
    for batch in (1, 3):
        images, expected = _reference(tiny_checkpoint, batch)
        actual = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
        assert actual.shape == (batch, len(CLASS_NAMES))
        assert np.abs(actual - expected).max() <= 1e-4


@pytest.mark.slow
def test_torchscript_export_matches_pytorch(tiny_checkpoint: Path, tmp_path: Path) -> None:
    report = export(tiny_checkpoint, "torchscript", tmp_path / "model.pt", batch_size=5)
    assert report.passed and report.batch_sizes == (1, 5)
    with warnings.catch_warnings():  # torch 2.14 deprecates TorchScript itself
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(str(tmp_path / "model.pt"))
    images, expected = _reference(tiny_checkpoint, 3)
    with torch.inference_mode():
        assert np.abs(scripted(images).numpy() - expected).max() <= 1e-4


@pytest.mark.slow
def test_safetensors_export_round_trips_weights_and_meta(tiny_checkpoint: Path, tmp_path: Path) -> None:
    report = export(tiny_checkpoint, "safetensors", tmp_path / "model.safetensors")
    assert report.max_abs_diff == 0.0
    model, meta = load_trained_model(tmp_path / "model.safetensors")
    assert list(meta.class_names) == CLASS_NAMES and meta.input_size == TINY_SIZE
    images, expected = _reference(tiny_checkpoint, 2)
    with torch.inference_mode():
        np.testing.assert_array_equal(model(images).numpy(), expected)


@pytest.mark.slow
def test_export_fails_when_the_exported_model_drifts(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_exporter = export_module._export_torchscript

    def drifting(*args, **kwargs):
        name, run = real_exporter(*args, **kwargs)
        return name, lambda images: run(images) + 1e-3

    monkeypatch.setattr(export_module, "_export_torchscript", drifting)
    with pytest.raises(DeitError, match=r"differs from PyTorch by max \|diff\| 1\.0+e-03"):
        export(tiny_checkpoint, "torchscript", tmp_path / "model.pt")


def test_missing_onnxruntime_names_the_export_extra(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    code = main(
        ["export", "--checkpoint", str(tiny_checkpoint), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "onnxruntime" in err and "deit[export]" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_int8_onnx_export_reports_top1_agreement_on_the_validation_split(
    tiny_checkpoint: Path, tmp_path: Path, image_dataset: Path
) -> None:
    import onnx

    output = tmp_path / "model.int8.onnx"
    report = export(
        tiny_checkpoint,
        "onnx",
        output,
        quantize="int8",
        data_set="IMAGEFOLDER",
        data_path=str(image_dataset),
        min_agreement=0.0,
    )
    assert "MatMulInteger" in {node.op_type for node in onnx.load(str(output)).graph.node}
    assert report.agreement is not None and report.agreement.images == 2 * len(CLASS_NAMES)
    assert 0 <= report.agreement.agreeing <= report.agreement.images
    assert "top-1 agreement with fp32 on IMAGEFOLDER validation" in report.summary()
    assert not list(tmp_path.glob("deit-onnx-*"))  # the fp32 intermediate is cleaned up


def _disagreeing_onnx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the exported runner's top-1 differ from the real one's on every image (its logits rolled by one class:
    the argmax moves to the next class), so it agrees with fp32 on none, whatever the checkpoint predicts."""
    real_exporter = export_module._export_onnx

    def shifted(*args, **kwargs):
        name, run = real_exporter(*args, **kwargs)

        def next_class(images):
            return np.roll(run(images), 1, axis=1)

        return name, next_class

    monkeypatch.setattr(export_module, "_export_onnx", shifted)


@pytest.mark.slow
def test_int8_export_below_the_agreement_floor_leaves_nothing_at_output(
    tiny_checkpoint: Path,
    tmp_path: Path,
    image_dataset: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    _disagreeing_onnx(monkeypatch)
    output = tmp_path / "model.int8.onnx"
    argv = [
        "export",
        "--checkpoint",
        str(tiny_checkpoint),
        "--format",
        "onnx",
        "--output",
        str(output),
        "--quantize",
        "int8",
        "--data-set",
        "IMAGEFOLDER",
        "--data-path",
        str(image_dataset),
        "--min-agreement",
        "1.0",
    ]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "below --min-agreement 100.0%" in err
    assert "nothing was written" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temporary file
    assert main(argv + ["--keep-failed"]) == 2  # a retry is not refused as "already exists"
    assert "kept at" in capsys.readouterr().err
    assert not output.exists() and (tmp_path / "model.int8.failed.onnx").is_file()


def test_quantize_needs_onnx(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(DeitError, match="--quantize int8 needs --format onnx"):
        export(tiny_checkpoint, "torchscript", tmp_path / "m.pt", quantize="int8")
