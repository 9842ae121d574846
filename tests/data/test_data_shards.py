"""`deit data pack` and `--data-set WDS`: shards written, each sample read once per epoch over ranks x workers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from deit.cli import main
from deit.data import build_dataset
from deit.data.shards import ShardDataset
from deit.errors import DeitError
from image_folders import write_class_folders

TINY = [
    "--model",
    "deit_tiny_distilled_patch16_224",
    "--model-kwargs",
    '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}',
    "--input-size",
    "32",
]


def make_folder(root: Path, classes: int = 3, per_class: int = 16) -> Path:
    """`root/{train,val}/class_k/*.png|jpg`: every image different, so a digest names it."""
    return write_class_folders(root, classes=classes, per_class=per_class, shape=(20, 24), formats=("jpg", "png"))


def digest(image: Image.Image) -> str:
    """A sample's identity (module level: data-loader workers pickle the transform)."""
    return hashlib.md5(image.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 training samples in 8 shards of 6, 6 validation samples."""
    root = tmp_path_factory.mktemp("wds")
    assert (
        main(
            [
                "data",
                "pack",
                "--data-path",
                str(make_folder(root / "images")),
                "--output",
                str(root / "shards"),
                "--shard-size",
                "6",
            ]
        )
        == 0
    )
    return root / "shards"


def test_pack_writes_shards_and_an_index_with_counts_and_class_names(shards: Path) -> None:
    index = json.loads((shards / "index.json").read_text())
    assert index["classes"] == ["class_0", "class_1", "class_2"]
    assert index["splits"]["train"]["count"] == 48 and len(index["splits"]["train"]["shards"]) == 8
    assert (shards / "train-000000.tar").is_file() and (shards / "val-000000.tar").is_file()


def test_pack_refuses_to_write_into_a_folder_with_files(shards: Path, tmp_path: Path) -> None:
    with pytest.raises(DeitError, match="not an empty folder"):
        from deit.data.pack import pack_folder

        pack_folder(str(tmp_path), shards)


def _read_epoch(shards: Path, epoch: int, world_size: int, workers: int) -> list[str]:
    seen: list[str] = []
    for rank in range(world_size):
        dataset = ShardDataset(str(shards), train=True, transform=digest, shuffle_buffer=10)
        dataset.configure(rank=rank, world_size=world_size, num_workers=workers)
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=None, num_workers=workers)
        seen += [key for key, _ in loader]
    return seen


@pytest.mark.slow
def test_two_ranks_two_workers_read_every_sample_once_per_epoch(shards: Path) -> None:
    first, second = _read_epoch(shards, 0, 2, 2), _read_epoch(shards, 1, 2, 2)
    assert len(first) == len(set(first)) == 48 and set(first) == set(second)
    assert first != second  # reshuffled per epoch


@pytest.mark.slow
def test_uneven_shards_pad_every_rank_to_the_same_count(shards: Path) -> None:
    seen = _read_epoch(shards, 0, 3, 1)  # 8 shards over 3 readers: 18/18/12 samples, the last starts again
    assert len(seen) == 3 * 18 and len(set(seen)) == 48


def test_a_bad_record_is_skipped_and_named(tmp_path: Path, shards: Path) -> None:
    import webdataset as wds

    (tmp_path / "index.json").write_text(
        json.dumps(
            {
                "classes": ["a", "b"],
                "splits": {
                    "train": {"count": 3, "shards": [{"file": "train-000000.tar", "count": 3}]},
                    "val": {"count": 3, "shards": [{"file": "train-000000.tar", "count": 3}]},
                },
            }
        )
    )
    good = (shards.parent / "images" / "train" / "class_0" / "0.jpg").read_bytes()
    with wds.TarWriter(str(tmp_path / "train-000000.tar")) as writer:
        for key, data in (("k0", good), ("broken", b"not an image"), ("k2", good)):
            writer.write({"__key__": key, "jpg": data, "cls": b"1"})
    dataset = build_dataset("WDS", str(tmp_path), train=False, transform=None, report_dir=str(tmp_path))
    assert [label for _, label in dataset] == [1, 1]
    assert "train-000000.tar:broken" in (tmp_path / "skipped_files.txt").read_text()


def test_missing_index_and_unknown_shard_name_the_file(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(DeitError, match="index.json"):
        build_dataset("WDS", str(tmp_path), train=True, transform=None)
    with pytest.raises(DeitError, match="train-000099.tar"):
        build_dataset("WDS", str(shards / "train-{000000,000099}.tar"), train=True, transform=None)
    assert len(build_dataset("WDS", str(shards / "train-{000000..000003}.tar"), train=True, transform=None)) == 24


@pytest.mark.slow
def test_deit_train_from_shards(shards: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    code = main(
        [
            "train",
            "--data-set",
            "WDS",
            "--data-path",
            str(shards),
            *TINY,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--num_workers",
            "2",
            "--warmup-epochs",
            "0",
            "--log-format",
            "plain",
            "--output_dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "log.txt").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]


TORCHRUN_SCRIPT = """
import json, os, sys, torch.distributed as dist
from torch.utils.data import DataLoader
from deit.data import build_dataset
sys.path[:0] = [sys.argv[2], os.path.dirname(sys.argv[2])]  # this test file, and tests/ for image_folders
from test_data_shards import digest
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
dataset = build_dataset("WDS", sys.argv[1], train=True, transform=digest, options={"shuffle_buffer": 10})
dataset.configure(rank=rank, world_size=world, num_workers=2)
epochs = []
for epoch in range(2):
    dataset.set_epoch(epoch)
    mine = [key for key, _ in DataLoader(dataset, batch_size=None, num_workers=2)]
    everyone = [None] * world
    dist.all_gather_object(everyone, mine)
    epochs.append(sum(everyone, []))
if rank == 0:
    print(json.dumps([[len(keys), len(set(keys))] for keys in epochs]))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_torchrun_two_ranks_two_workers_read_each_sample_once(shards: Path, tmp_path: Path) -> None:
    script = tmp_path / "count.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(shards),
            str(Path(__file__).parent),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [[48, 48], [48, 48]]
