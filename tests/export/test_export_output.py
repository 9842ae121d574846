"""Only verified exports exist, exactly one of two racing exports wins, and what ships is complete and readable."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import deit
from deit.cli import main
from deit.errors import DeitError
from deit.export.export_output import staged_file, staged_folder
from deit.export.exporter import export
from deit.inference.predict import predict
from deit.integrity import source_sha256
from tiny_checkpoints import CLASS_NAMES, TINY_SIZE, write_image


def test_of_two_interleaved_file_exports_exactly_one_is_published(tmp_path: Path) -> None:
    output = tmp_path / "model.onnx"
    first, second = (staged_file(output, overwrite=False, keep_failed=False) for _ in range(2))
    path_a, path_b = first.__enter__(), second.__enter__()  # both pass the "does it exist" check
    path_a.write_bytes(b"A")
    path_b.write_bytes(b"B")
    first.__exit__(None, None, None)
    with pytest.raises(DeitError, match="created by someone else while this export ran"):
        second.__exit__(None, None, None)
    assert output.read_bytes() == b"A" and sorted(tmp_path.iterdir()) == [output]


def test_of_two_interleaved_folder_exports_exactly_one_is_published(tmp_path: Path) -> None:
    output = tmp_path / "timm"
    first, second = (staged_folder(output, overwrite=False, keep_failed=False) for _ in range(2))
    folder_a, folder_b = first.__enter__(), second.__enter__()
    (folder_a / "model.safetensors").write_bytes(b"A")
    (folder_b / "model.safetensors").write_bytes(b"B")
    first.__exit__(None, None, None)
    with pytest.raises(DeitError, match="someone else"):
        second.__exit__(None, None, None)
    assert (output / "model.safetensors").read_bytes() == b"A" and sorted(tmp_path.iterdir()) == [output]


def test_two_export_processes_to_one_new_output_cannot_both_succeed(tiny_checkpoint: Path, tmp_path: Path) -> None:
    output = tmp_path / "model.pt"
    env = dict(os.environ, PYTHONPATH=str(Path(deit.__file__).parents[1]))
    argv = [
        sys.executable,
        "-m",
        "deit",
        "export",
        "--checkpoint",
        str(tiny_checkpoint),
        "--format",
        "torchscript",
        "--output",
        str(output),
    ]
    processes = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert loser.count("\n") == 1 and ("someone else" in loser or "already exists" in loser)
    assert sorted(tmp_path.iterdir()) == [output]  # no temporary file left by either


def test_int8_without_a_known_data_set_is_refused_unless_waived(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "model.onnx"
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
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records no data set" in err and "--no-agreement-check" in err
    assert not output.exists()
    assert main(argv + ["--no-agreement-check"]) == 0
    assert "NOT measured (--no-agreement-check)" in capsys.readouterr().out and output.is_file()


def test_a_class_count_mismatch_leaves_nothing_at_output(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "two_classes"
    for split in ("train", "val"):
        for index, name in enumerate(CLASS_NAMES[:2]):
            (data / split / name).mkdir(parents=True)
            write_image(data / split / name / "0.png", seed=index)
    output = tmp_path / "out" / "model.onnx"
    assert (
        main(
            [
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
                str(data),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "has 2 classes but the model predicts 3" in err and "nothing was written" in err
    assert list(output.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("onnx", "m.onnx"), ("torchscript", "m.pt"), ("safetensors", "m.safetensors"), ("timm", "timm_dir")],
)
def test_exported_files_get_the_users_usual_permissions(
    tiny_checkpoint: Path, tmp_path: Path, fmt: str, name: str
) -> None:
    previous = os.umask(0o022)
    try:
        export(tiny_checkpoint, fmt, tmp_path / name)
    finally:
        os.umask(previous)
    output = tmp_path / name
    files = sorted(output.iterdir()) if output.is_dir() else [output]
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in files), {
        f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in files
    }
    if output.is_dir():
        assert stat.S_IMODE(output.stat().st_mode) == 0o755


def _predictions(checkpoint: Path, images: list[Path]) -> list[tuple[list[str], list[float]]]:
    return [(p.classes, p.probabilities) for p in predict(checkpoint, images, topk=3, device="cpu", workers=0)]


@pytest.fixture(scope="module")
def three_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("predict_images")
    return [write_image(folder / f"{i}.png", seed=100 + i) for i in range(3)]


def test_our_timm_export_predicts_what_the_source_predicts(
    tiny_checkpoint: Path, tmp_path: Path, three_images: list[Path]
) -> None:
    export(tiny_checkpoint, "timm", tmp_path / "timm")
    expected, actual = _predictions(tiny_checkpoint, three_images), _predictions(tmp_path / "timm", three_images)
    for (classes, probabilities), (classes_back, probabilities_back) in zip(expected, actual):
        assert classes_back == classes and set(classes) <= set(CLASS_NAMES)
        assert probabilities_back == pytest.approx(probabilities, abs=1e-6)


def test_onnx_carries_its_metadata_and_predict_uses_it(
    tiny_checkpoint: Path, tmp_path: Path, three_images: list[Path]
) -> None:
    import onnx

    output = tmp_path / "model.onnx"
    export(tiny_checkpoint, "onnx", output)
    properties = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert json.loads(properties["class_names"]) == CLASS_NAMES
    assert json.loads(properties["input_size"]) == [3, TINY_SIZE, TINY_SIZE]
    assert len(json.loads(properties["mean"])) == 3 and len(json.loads(properties["std"])) == 3
    assert properties["source_sha256"] == source_sha256(tiny_checkpoint) and len(properties["source_sha256"]) == 64
    expected, actual = _predictions(tiny_checkpoint, three_images), _predictions(output, three_images)
    for (classes, probabilities), (classes_back, probabilities_back) in zip(expected, actual):
        assert classes_back == classes
        assert probabilities_back == pytest.approx(probabilities, abs=1e-4)


def test_predict_refuses_an_onnx_file_without_our_metadata(
    tiny_checkpoint: Path, tmp_path: Path, three_images: list[Path], capsys: pytest.CaptureFixture
) -> None:
    import onnx

    output = tmp_path / "model.onnx"
    export(tiny_checkpoint, "onnx", output)
    bare = onnx.load(str(output))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert main(["predict", "--checkpoint", str(tmp_path / "bare.onnx"), str(three_images[0])]) == 2
    assert "carries no deit metadata" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["predict", "--checkpoint", str(tmp_path / "junk.onnx"), str(three_images[0])]) == 2
    assert "cannot be read as ONNX" in capsys.readouterr().err


def test_the_model_card_states_origin_data_recipe_as_run_licence_and_use(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from deit.export.model_card import model_card
    from deit.models.factory import load_trained_model

    payload = torch.load(tiny_checkpoint, weights_only=True)
    payload["args"] = {
        "model": payload["args"]["model"],
        "data_set": "IMAGEFOLDER",
        "data_path": "/data/fruit",
        "input_size": TINY_SIZE,
        "lr": 5e-4,
        "batch_size": 16,
        "epochs": 3,
        "finetune": "/runs/digits/checkpoint.pth",
    }
    payload["optimizer"] = {"state": {}, "param_groups": [{"lr": 1e-6, "initial_lr": 5e-4 * 16 / 512, "params": []}]}
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save(payload, checkpoint)
    _, meta = load_trained_model(checkpoint)
    card = model_card(checkpoint, meta, fmt="timm", license="apache-2.0")
    assert "license: apache-2.0" in card and "## Licence" in card and "## Intended use" in card
    assert "fine-tuned from: `/runs/digits/checkpoint.pth`" in card
    assert "data: IMAGEFOLDER (`/data/fruit`)" in card
    assert "lr=1.563e-05 (--lr 0.0005 scaled to the batch)" in card  # what the run used, not the base lr alone
    assert source_sha256(checkpoint) in card


def test_a_folder_export_that_fails_its_check_leaves_no_folder(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deit.export.timm_format as export_timm

    def drifting(checkpoint: Path, output: Path, **_: object) -> tuple[Path, float, int]:
        (Path(output) / "model.safetensors").write_bytes(b"unverified")
        return Path(output), 1.0, TINY_SIZE  # timm's reload differs from ours by 1.0

    monkeypatch.setattr(export_timm, "export_timm", drifting)
    with pytest.raises(DeitError, match=r"differs from PyTorch by max \|diff\| 1\.000e\+00.*nothing was written"):
        export(tiny_checkpoint, "timm", tmp_path / "timm_dir")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DeitError, match="kept at"):
        export(tiny_checkpoint, "timm", tmp_path / "timm_dir", keep_failed=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timm_dir.failed"]
    assert (tmp_path / "timm_dir.failed" / "model.safetensors").read_bytes() == b"unverified"
