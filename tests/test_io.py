"""`deit.io`: paths checked to be regular files before anything opens them; JSON from data sets bounded."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from deit.errors import DeitError
from deit.io import read_json_bounded, read_text_file, require_regular_file


def test_a_regular_file_passes_and_a_folder_only_when_allowed(tmp_path: Path) -> None:
    (tmp_path / "weights.pth").write_bytes(b"x")
    assert require_regular_file(tmp_path / "weights.pth", flag="--resume") == tmp_path / "weights.pth"
    assert require_regular_file(tmp_path, allow_directory=True) == tmp_path
    with pytest.raises(DeitError, match=r"^--resume .*: is a folder, not a regular file$"):
        require_regular_file(tmp_path, flag="--resume")
    with pytest.raises(DeitError, match=r"^--finetune .*nothing: no such file$"):
        require_regular_file(tmp_path / "nothing", flag="--finetune")


@pytest.mark.timeout(30)  # a check that opened the FIFO would block here forever
def test_a_fifo_and_a_device_are_refused_without_being_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.pth")
    with pytest.raises(DeitError, match=r"^--checkpoint .*pipe.pth: is a FIFO \(named pipe\), not a regular file"):
        require_regular_file(tmp_path / "pipe.pth", flag="--checkpoint", allow_directory=True)
    with pytest.raises(DeitError, match="is a device"):
        require_regular_file("/dev/zero")


def test_bounded_json_reads_a_small_file(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text(json.dumps({"classes": ["a"], "splits": {"train": {"shards": []}}}))
    assert read_json_bounded(tmp_path / "index.json")["classes"] == ["a"]


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deep_json_is_one_line_naming_the_file(tmp_path: Path, depth: int) -> None:
    (tmp_path / "index.json").write_text("[" * depth + "]" * depth)
    with pytest.raises(DeitError, match=r"index.json: JSON nested deeper than 32 levels"):
        read_json_bounded(tmp_path / "index.json")


def test_oversize_and_invalid_json_are_refused(tmp_path: Path) -> None:
    (tmp_path / "index.json").write_text('{"classes": ["' + "a" * 200 + '"]}')
    with pytest.raises(DeitError, match=r"index.json: 2\d\d bytes, over the 100 accepted"):
        read_json_bounded(tmp_path / "index.json", max_bytes=100)
    (tmp_path / "index.json").write_text('{"classes": [')
    with pytest.raises(DeitError, match="index.json: not valid JSON"):
        read_json_bounded(tmp_path / "index.json")


def test_a_text_file_that_is_not_utf8_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_bytes(b"epochs: 1\nmodel: \xff\xfe\n")
    with pytest.raises(DeitError, match=r"--config .*run.yaml: not UTF-8 text \(byte 0xff at offset 17\)"):
        read_text_file(path, flag="--config")
    path.write_text("épochs: 1\n", encoding="utf-8")
    assert read_text_file(path) == "épochs: 1\n"
    with pytest.raises(DeitError, match="over the 4 accepted"):
        read_text_file(path, max_bytes=4)
    with pytest.raises(DeitError, match="is a folder"):
        read_text_file(tmp_path)


def test_deit_train_names_a_config_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from deit.cli import main

    (tmp_path / "run.yaml").write_bytes(b"epochs: 1\nmodel: \xff\xfe\n")
    assert main(["train", "--config", str(tmp_path / "run.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "run.yaml: not UTF-8 text" in err and "UnicodeDecodeError" not in err
