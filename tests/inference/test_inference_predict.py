"""`deit predict`: class names from the checkpoint, its own preprocessing, and bad inputs reported, not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from deit.cli import main
from deit.commands.predict import EXIT_SOME_INPUTS_FAILED
from deit.inference.predict import predict
from deit.inference.preprocess import EvalPreprocessing
from tiny_checkpoints import CLASS_NAMES, TINY_SIZE, write_image


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Two good images (one in a subfolder), a truncated PNG, a text file, an empty file and a hidden file."""
    good = write_image(tmp_path / "good_a.png", seed=1)
    (tmp_path / "sub").mkdir()
    write_image(tmp_path / "sub" / "good_b.jpg", seed=2)
    (tmp_path / "corrupt.png").write_bytes(good.read_bytes()[:200])
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    return tmp_path


def test_predict_prints_class_names_and_json(
    tiny_checkpoint: Path, image_dataset: Path, capsys: pytest.CaptureFixture
) -> None:
    image = image_dataset / "val" / "banana" / "0.png"
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(image), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ")
    ranked = line.removeprefix(f"{image}: ").split(", ")
    assert len(ranked) == 2 and all(entry.split()[0] in CLASS_NAMES for entry in ranked)

    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(image), "--json", "--topk", "3"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    probabilities = [entry["probability"] for entry in record["topk"]]
    assert record["path"] == str(image)
    assert sorted(entry["class"] for entry in record["topk"]) == sorted(CLASS_NAMES)
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)  # top-3 of 3 classes is the whole softmax


def test_eval_preprocessing_resizes_by_crop_pct_then_center_crops() -> None:
    image = Image.fromarray(torch.randint(0, 256, (60, 80, 3), dtype=torch.uint8).numpy())
    preprocessing = EvalPreprocessing(input_size=TINY_SIZE, crop_pct=0.5, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    # On a PIL image torchvision resizes with Pillow, as the checkpoint's own transform does.
    expected = v2.Compose(
        [
            v2.Resize(64, interpolation=v2.InterpolationMode.BICUBIC),
            v2.CenterCrop(TINY_SIZE),
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize((0.5, 0.5, 0.5), (0.25, 0.5, 1.0)),
        ]
    )(image)
    actual = preprocessing.transform()(image)
    assert actual.shape == (3, TINY_SIZE, TINY_SIZE)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    std = torch.tensor([0.25, 0.5, 1.0]).view(3, 1, 1)
    torch.testing.assert_close(
        preprocessing.denormalize(actual[None])[0], (expected * std + 0.5).clamp(0, 1), atol=1e-5, rtol=0
    )


def test_folder_with_bad_files_predicts_the_rest_and_names_each(
    tiny_checkpoint: Path, mixed_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["predict", "--checkpoint", str(tiny_checkpoint), str(mixed_folder), "--topk", "1"])
    captured = capsys.readouterr()
    assert code == EXIT_SOME_INPUTS_FAILED
    predicted = captured.out.strip().splitlines()
    assert [line.split(":")[0] for line in predicted] == [
        str(mixed_folder / "good_a.png"),
        str(mixed_folder / "sub" / "good_b.jpg"),
    ]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3
    for bad in ("corrupt.png", "notes.txt", "empty.jpg"):
        assert sum(str(mixed_folder / bad) in line for line in errors) == 1
    assert "Traceback" not in captured.err and ".DS_Store" not in captured.err


def test_json_output_lists_errors_next_to_predictions(
    tiny_checkpoint: Path, mixed_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    missing = mixed_folder / "missing.png"
    code = main(
        ["predict", "--checkpoint", str(tiny_checkpoint), str(mixed_folder / "good_a.png"), str(missing), "--json"]
    )
    records = json.loads(capsys.readouterr().out)
    assert code == EXIT_SOME_INPUTS_FAILED
    assert [("topk" in r, "error" in r) for r in records] == [(True, False), (False, True)]
    assert str(missing) in records[1]["error"]


def test_batching_does_not_change_predictions(tiny_checkpoint: Path, image_dataset: Path) -> None:
    one_by_one = predict(tiny_checkpoint, [image_dataset / "val"], topk=3, batch_size=1, device="cpu")
    batched = predict(tiny_checkpoint, [image_dataset / "val"], topk=3, batch_size=4, device="cpu")
    assert len(one_by_one) == 2 * len(CLASS_NAMES)
    assert [p.path for p in one_by_one] == [p.path for p in batched]
    for single, batch in zip(one_by_one, batched):
        assert single.classes == batch.classes
        assert single.probabilities == pytest.approx(batch.probabilities, abs=1e-5)


def test_missing_checkpoint_and_unreadable_inputs_fail_on_one_line(
    tiny_checkpoint: Path, mixed_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    image = str(mixed_folder / "good_a.png")
    assert main(["predict", "--checkpoint", str(mixed_folder / "nope.pth"), image]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pth" in err and "Traceback" not in err

    assert main(["predict", "--checkpoint", str(tiny_checkpoint), str(mixed_folder / "notes.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt" in err

    bad = [str(mixed_folder / name) for name in ("notes.txt", "empty.jpg")]
    assert main(["predict", "--checkpoint", str(tiny_checkpoint), *bad]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(path in err for path in bad)


def test_names_with_control_characters_are_printed_escaped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deit.commands import predict as predict_command
    from deit.errors import printable
    from deit.inference.predict import Prediction

    assert printable("cat\nDOG 1.000\x1b[31m") == "cat\\nDOG 1.000\\x1b[31m" and printable("café") == "café"
    hostile = Prediction(str(tmp_path / "a\nb.png"), ["cat\nDOG 1.000", "b"], [0, 1], [0.6, 0.4])
    predict_command._print_text([hostile])
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{tmp_path}/a\\nb.png: cat\\nDOG 1.000 0.600, b 0.400"]
