"""Untrusted checkpoint meta and inputs: checked against the tensors, bounded, never a download; NaN is loud."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import deit
from deit.cli import main
from tiny_checkpoints import CLASS_NAMES, TINY_MODEL, TINY_OVERRIDES, TINY_SIZE, save_tiny_checkpoint, write_image


def _tiny_safetensors(path: Path, **meta_changes: object) -> Path:
    model = deit.create_model(TINY_MODEL, img_size=TINY_SIZE, num_classes=len(CLASS_NAMES), **TINY_OVERRIDES)
    meta = {
        "model": TINY_MODEL,
        "model_kwargs": dict(TINY_OVERRIDES),
        "input_size": TINY_SIZE,
        "num_classes": len(CLASS_NAMES),
        "class_names": list(CLASS_NAMES),
        "crop_pct": 0.875,
    }
    for key, value in meta_changes.items():
        if key in ("depth", "pretrained", "embed_dim"):
            meta["model_kwargs"][key] = value  # type: ignore[index]
        else:
            meta[key] = value
    # Written raw (not through CheckpointMeta, which would refuse it): the file is the hostile input under test.
    save_file(
        {key: value.contiguous() for key, value in model.state_dict().items()},
        str(path),
        metadata={"format": "pt", "deit": json.dumps(meta)},
    )
    return path


def _predict(checkpoint: Path, image: Path) -> int:
    return main(["predict", "--checkpoint", str(checkpoint), str(image), "--workers", "0"])


def test_a_depth_5000_meta_is_refused_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = _tiny_safetensors(tmp_path / "m.safetensors", depth=5000)
    image = write_image(tmp_path / "a.png", seed=0)
    import deit.models.vit as vit

    # Refused before any model is built (it used to build 5000 blocks first: ~47 s and ~10 GB).
    monkeypatch.setattr(vit.VisionTransformer, "__init__", lambda *a, **k: pytest.fail("a model was built"))
    assert _predict(checkpoint, image) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "depth=5000" in err and "depth=2" in err and "m.safetensors" in err


def test_pretrained_in_meta_never_downloads(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deit.models.download as download

    monkeypatch.setattr(download, "fetch_checkpoint", lambda *a, **k: pytest.fail("a download was attempted"))
    checkpoint = _tiny_safetensors(tmp_path / "m.safetensors", pretrained=True)
    assert _predict(checkpoint, write_image(tmp_path / "a.png", seed=0)) == 2
    assert "'pretrained' is refused" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"crop_pct": 1e-9}, "'crop_pct'"),
        ({"class_names": 7}, "'class_names'"),
        ({"num_classes": "three"}, "'num_classes'"),
        ({"embed_dim": 4096}, "embed_dim"),
    ],
)
def test_bad_meta_is_one_line_naming_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, message: str
) -> None:
    checkpoint = _tiny_safetensors(tmp_path / "m.safetensors", **change)
    assert _predict(checkpoint, write_image(tmp_path / "a.png", seed=0)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "m.safetensors" in err and "--" not in err


def test_nan_weights_fail_predict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = save_tiny_checkpoint(tmp_path / "ck.pth")
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"]["blocks.0.attn.qkv.weight"].fill_(float("inf"))
    torch.save(payload, checkpoint)
    assert _predict(checkpoint, write_image(tmp_path / "a.png", seed=0)) == 2
    assert "non-finite weights" in capsys.readouterr().err


def test_nan_outputs_are_no_prediction(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deit.models.vit as vit

    original = vit.VisionTransformer.forward
    monkeypatch.setattr(vit.VisionTransformer, "forward", lambda self, x: original(self, x) * float("nan"))
    assert _predict(tiny_checkpoint, write_image(tmp_path / "a.png", seed=0)) == 2
    captured = capsys.readouterr()
    assert "not finite" in captured.err and "nan" not in captured.out.lower()


def test_a_fifo_is_skipped_not_waited_on(tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    good = write_image(tmp_path / "a.png", seed=0)
    assert (
        main(["predict", "--checkpoint", str(tiny_checkpoint), str(fifo), str(good), "--workers", "0", "--json"]) == 1
    )
    captured = capsys.readouterr()
    assert "not a regular file" in captured.err
    assert [row["path"] for row in json.loads(captured.out) if "topk" in row] == [str(good)]


@pytest.mark.slow
def test_an_unreadable_folder_is_reported_and_the_rest_predicted(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    good = write_image(tmp_path / "a.png", seed=0)
    real_access = os.access
    # Tests may run as root, for whom chmod 000 reads anyway: simulate the permission check.
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(locked), str(good), "--workers", "0"]) == 1
    captured = capsys.readouterr()
    assert "permission denied" in captured.err and "damaged" not in captured.err and str(good) in captured.out


def test_an_unreadable_file_is_not_called_damaged() -> None:
    from deit.data.images import describe_image_error

    assert (
        describe_image_error(Path("x.png"), PermissionError(13, "Permission denied"))
        == "cannot be read (permission denied)"
    )
