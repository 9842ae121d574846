"""`deit export` never writes over its input or an existing file, refuses unreadable extensions, and NaN is loud."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from deit.cli import main
from deit.errors import DeitError
from tiny_checkpoints import save_tiny_checkpoint


def _export(*argv: str) -> int:
    return main(["export", *argv])


def test_export_onto_its_input_is_refused_and_the_checkpoint_survives(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = Path(shutil.copy(tiny_checkpoint, tmp_path / "ck.pth"))
    before = checkpoint.read_bytes()
    for fmt in ("torchscript", "safetensors"):
        assert (
            _export("--checkpoint", str(checkpoint), "--format", fmt, "--output", str(checkpoint), "--overwrite") == 2
        )
        assert checkpoint.read_bytes() == before
    err = capsys.readouterr().err
    assert "never writes over its input" in err or "must end in" in err


@pytest.mark.slow
def test_existing_output_needs_overwrite(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "model.pt"
    output.write_bytes(b"keep me")
    assert _export("--checkpoint", str(tiny_checkpoint), "--format", "torchscript", "--output", str(output)) == 2
    assert output.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert (
        _export("--checkpoint", str(tiny_checkpoint), "--format", "torchscript", "--output", str(output), "--overwrite")
        == 0
    )
    assert output.read_bytes() != b"keep me"


@pytest.mark.parametrize(
    ("fmt", "name"), [("safetensors", "model.pth"), ("onnx", "model.safetensors"), ("torchscript", "model.onnx")]
)
def test_a_format_into_a_foreign_extension_is_refused_before_writing(
    tiny_checkpoint: Path, tmp_path: Path, fmt: str, name: str, capsys: pytest.CaptureFixture
) -> None:
    assert _export("--checkpoint", str(tiny_checkpoint), "--format", fmt, "--output", str(tmp_path / name)) == 2
    assert not (tmp_path / name).exists()
    assert "must end in" in capsys.readouterr().err


def test_nan_weights_are_refused_by_export(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "ck.pth")
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"]["head.weight"][0, 0] = float("nan")
    torch.save(payload, checkpoint)
    assert _export("--checkpoint", str(checkpoint), "--format", "torchscript", "--output", str(tmp_path / "m.pt")) == 2
    assert "non-finite weights" in capsys.readouterr().err and not (tmp_path / "m.pt").exists()


def test_nan_outputs_fail_the_parity_check(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # Finite weights, NaN outputs (e.g. an overflow): max() ignoring NaN used to report a perfect match.
    import deit.models.vit as vit

    original = vit.VisionTransformer.forward
    monkeypatch.setattr(vit.VisionTransformer, "forward", lambda self, x: original(self, x) * float("nan"))
    assert (
        _export("--checkpoint", str(tiny_checkpoint), "--format", "torchscript", "--output", str(tmp_path / "m.pt"))
        == 2
    )
    assert "non-finite outputs" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # the unverified file is not left at --output, nor its temporary


def test_a_folder_export_never_writes_into_the_input_folder_or_a_full_folder(tmp_path: Path) -> None:
    from deit.export.target import check_export_folder

    run = tmp_path / "run"
    run.mkdir()
    checkpoint = run / "checkpoint.pth"
    checkpoint.write_bytes(b"weights")
    with pytest.raises(DeitError, match="holds the input checkpoint"):
        check_export_folder(checkpoint, run, overwrite=True)
    with pytest.raises(DeitError, match="is a file"):
        check_export_folder(checkpoint, checkpoint)
    full = tmp_path / "hf"
    full.mkdir()
    (full / "config.json").write_text("{}")
    with pytest.raises(DeitError, match="not empty; pass --overwrite"):
        check_export_folder(checkpoint, full)
    assert check_export_folder(checkpoint, full, overwrite=True) == full
    assert check_export_folder(checkpoint, tmp_path / "new") == tmp_path / "new"
    assert checkpoint.read_bytes() == b"weights"
