"""`deit data pack` is all or nothing: never inside its input; disk full or a signal leaves nothing behind."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest

from deit.cli import main
from deit.data.pack import pack_folder
from deit.errors import DeitError
from image_folders import write_class_folders


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_class_folders(tmp_path / "images", classes=2, per_class=4, shape=(12, 12))


def _pack(images: Path, output: Path) -> int:
    return main(["data", "pack", "--data-path", str(images), "--output", str(output), "--shard-size", "2"])


@pytest.mark.parametrize("inside", ["train/packed", "packed", "."])
def test_the_output_may_not_lie_inside_the_input(images: Path, capsys: pytest.CaptureFixture, inside: str) -> None:
    before = sorted(str(p) for p in images.rglob("*"))
    assert _pack(images, images / inside) == 2
    assert "inside --data-path" in capsys.readouterr().err
    assert sorted(str(p) for p in images.rglob("*")) == before


def test_an_empty_output_folder_is_filled_whole(images: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert _pack(images, tmp_path / "out") == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["splits"]["train"]["count"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "out"]  # no staging folder left


def _fail_on_write(monkeypatch: pytest.MonkeyPatch, after: int, failure) -> None:
    """Make the `after`-th record write (0-based) fail with `failure()`, as a full disk or a signal would."""
    import webdataset

    real, calls = webdataset.TarWriter.write, []

    def write(self, sample):
        calls.append(sample)
        if len(calls) > after:
            failure()
        return real(self, sample)

    monkeypatch.setattr(webdataset.TarWriter, "write", write)


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_is_said_in_words_and_nothing_is_kept(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _fail_on_write(monkeypatch, 3, _disk_full)  # the second shard (2 records each)
    assert _pack(images, tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == (
        f"deit: error: --output {tmp_path / 'out'}: disk full while writing train-000001.tar; nothing kept"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


@pytest.mark.parametrize("how", ["ctrl-c", "SIGTERM"])
def test_an_interrupted_pack_leaves_nothing(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    def interrupt() -> None:
        if how == "SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)  # the handler turns it into an interrupt at once
        raise KeyboardInterrupt

    _fail_on_write(monkeypatch, 5, interrupt)
    with pytest.raises(DeitError, match="interrupted before the pack was complete; nothing kept"):
        pack_folder(str(images), tmp_path / "out", shard_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the previous handler is back
