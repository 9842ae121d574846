"""`index.json` is untrusted: shards confined to its folder, counts checked against the tars, size/depth bounded."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from deit.cli import main
from deit.data.shards import ShardDataset, _ustar_keys, count_records
from deit.errors import DeitError
from image_folders import write_class_folders


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 4 training images in 3 shards of 4; 6 validation images."""
    root = tmp_path_factory.mktemp("index")
    write_class_folders(root / "images", classes=3, per_class=4, shape=(12, 12))
    assert (
        main(
            ["data", "pack", "--data-path", str(root / "images"), "--output", str(root / "shards"), "--shard-size", "4"]
        )
        == 0
    )
    return root / "shards"


def edited(packed: Path, tmp_path: Path, edit) -> str:
    """A copy of the shard folder whose index `edit(index)` changed."""
    folder = tmp_path / "copy"
    shutil.copytree(packed, folder)
    index = json.loads((folder / "index.json").read_text())
    edit(index)
    (folder / "index.json").write_text(json.dumps(index))
    return str(folder)


def _add_shard(name: str, count: int = 1):
    return lambda index: index["splits"]["train"]["shards"].append({"file": name, "count": count})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../../../../../../etc/passwd", "not a normalised relative path"),
        ("/etc/passwd", "not a normalised relative path"),
        ("./train-000000.tar", "not a normalised relative path"),
        ("sub//x.tar", "not a normalised relative path"),
        ("a\\..\\x.tar", "not a normalised relative path"),
    ],
)
def test_a_shard_outside_or_unnormalised_is_refused(packed: Path, tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(DeitError, match=f"index.json: shard .* {message}"):
        ShardDataset(edited(packed, tmp_path, _add_shard(name)), train=True, transform=None)


def test_a_symlink_leading_out_of_the_folder_is_refused(packed: Path, tmp_path: Path) -> None:
    folder = edited(packed, tmp_path, _add_shard("outside.tar"))
    (tmp_path / "elsewhere.tar").write_bytes((packed / "train-000000.tar").read_bytes())
    os.symlink(tmp_path / "elsewhere.tar", Path(folder) / "outside.tar")
    with pytest.raises(DeitError, match=r"outside.tar: shard listed in .*index.json leads out of"):
        ShardDataset(folder, train=True, transform=None)


@pytest.mark.timeout(60)  # a FIFO opened as a shard would block the reader forever
def test_a_fifo_shard_is_refused(packed: Path, tmp_path: Path) -> None:
    folder = edited(packed, tmp_path, _add_shard("pipe.tar"))
    os.mkfifo(Path(folder) / "pipe.tar")
    with pytest.raises(DeitError, match="pipe.tar: is a FIFO"):
        ShardDataset(folder, train=True, transform=None)


def test_counts_are_checked_against_the_tar_headers(packed: Path, tmp_path: Path) -> None:
    def inflate(index: dict) -> None:
        index["splits"]["train"]["shards"][1]["count"] *= 100

    with pytest.raises(DeitError, match=r"train-000001.tar: .*index.json says 400 records, the tar holds 4$"):
        ShardDataset(edited(packed, tmp_path, inflate), train=True, transform=None)


@pytest.mark.parametrize("count", [-5000, 1.5, "4", True, None])
def test_a_count_that_is_no_whole_number_is_refused(packed: Path, tmp_path: Path, count: object) -> None:
    folder = edited(packed, tmp_path, lambda index: index["splits"]["train"]["shards"][0].update(count=count))
    with pytest.raises(DeitError, match=r"shard 'train-000000.tar' has count .*; expected a whole number >= 0"):
        ShardDataset(folder, train=True, transform=None)


def test_a_deeply_nested_index_is_one_line_naming_the_file(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = edited(packed, tmp_path, lambda index: None)
    (Path(folder) / "index.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["train", "--data-set", "WDS", "--data-path", folder, "--epochs", "1"]) == 2
    assert capsys.readouterr().err.strip().endswith("index.json: JSON nested deeper than 32 levels")


def test_the_packed_index_itself_passes(packed: Path) -> None:
    dataset = ShardDataset(str(packed), train=True, transform=None)
    assert dataset.count == 12 and len(dataset.shards) == 3
    assert _ustar_keys(dataset.shards[0][0]) == {"000000000", "000000001", "000000002", "000000003"}  # fast path


def _tar(path: Path, names: list[str], fmt: int = tarfile.USTAR_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
    return path


def test_records_are_counted_by_key_in_plain_and_extended_headers(tmp_path: Path) -> None:
    names = ["000.jpg", "000.cls", "001.png", "001.cls", "d/002.jpg"]
    assert count_records(str(_tar(tmp_path / "plain.tar", names))) == 3
    long_key = "k" * 150  # over ustar's 100-byte name: a pax header, read by tarfile
    assert count_records(str(_tar(tmp_path / "pax.tar", [*names, f"{long_key}.jpg"], tarfile.PAX_FORMAT))) == 4
    assert (
        count_records(
            str(_tar(tmp_path / "gnu.tar", [f"{long_key}.jpg", f"{long_key}.cls", "x.jpg"], tarfile.GNU_FORMAT))
        )
        == 2
    )


def test_a_truncated_shard_is_one_line(tmp_path: Path) -> None:
    data = _tar(tmp_path / "t.tar", ["000.jpg", "000.cls"]).read_bytes()
    (tmp_path / "t.tar").write_bytes(data[:1024])  # one whole member, no end blocks: tarfile reads it too
    assert count_records(str(tmp_path / "t.tar")) == 1
    (tmp_path / "t.tar").write_bytes(data[:700])
    with pytest.raises(DeitError, match=r"t.tar: not a readable tar shard \(ReadError: truncated"):
        count_records(str(tmp_path / "t.tar"))
