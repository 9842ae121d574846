"""torchvision's pickled CIFAR layouts: read (and trained on) without running pickled code; hostile pickles refused."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from deit.cli import main
from deit.data import build_dataset
from deit.data.cifar_pickle import PICKLED_CIFAR, load_cifar_pickle
from deit.errors import DeitError


def write_pickled_cifar(root: Path, variant: int, *, per_batch: int = 4, protocol: int = 2, byte_keys: bool = False):
    """torchvision's download layout in miniature: dicts of a uint8 (N, 3072) array and labels, pickled.

    Returns the expected (train images HWC, train labels)."""
    layout = PICKLED_CIFAR[variant]
    folder = root / layout.folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(variant)
    key = (lambda name: name.encode()) if byte_keys else (lambda name: name)
    expected_images, expected_labels = [], []
    for number, name in enumerate(layout.train_files + layout.test_files):
        images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
        labels = [(number * per_batch + k) % variant for k in range(per_batch)]
        batch = {
            key("batch_label"): key(f"batch {number}"),
            key(layout.labels_key): labels,
            key("data"): images.transpose(0, 3, 1, 2).reshape(per_batch, -1),
            key("filenames"): [key(f"img_{k}.png") for k in range(per_batch)],
        }
        if variant == 100:
            batch[key("coarse_labels")] = [label % 20 for label in labels]
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        if name in layout.train_files:
            expected_images.append(images)
            expected_labels.extend(labels)
    meta = {key(layout.names_key): [key(f"class_{k}") for k in range(variant)], key("num_vis"): 3072}
    (folder / layout.meta_file).write_bytes(pickle.dumps(meta, protocol=protocol))
    return np.concatenate(expected_images), expected_labels


@pytest.mark.parametrize("variant", [10, 100])
@pytest.mark.parametrize(("protocol", "byte_keys"), [(2, False), (4, True), (5, False)])
def test_pickled_layout_reads_the_same_pixels_and_labels(tmp_path: Path, variant: int, protocol: int, byte_keys: bool):
    images, labels = write_pickled_cifar(tmp_path, variant, protocol=protocol, byte_keys=byte_keys)
    data_set = "CIFAR10" if variant == 10 else "CIFAR100"
    train = build_dataset(data_set, str(tmp_path), train=True, transform=None)
    assert np.array_equal(train.images, images) and train.targets == labels
    assert train.classes == [f"class_{k}" for k in range(variant)]
    test = build_dataset(
        data_set, str(tmp_path / PICKLED_CIFAR[variant].folder), train=False, transform=None
    )  # the folder itself
    assert len(test) == 4 and test[0][0].size == (32, 32)


class _RunsCode:
    """What a hostile pickle holds: a callable that the unpickler would call."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["data", "meta"])
def test_a_pickle_that_would_run_code_is_refused_and_never_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture, where: str
) -> None:
    write_pickled_cifar(tmp_path, 10)
    folder = tmp_path / "cifar-10-batches-py"
    marker = tmp_path / "pwned"
    target = folder / ("data_batch_1" if where == "data" else "batches.meta")
    target.write_bytes(pickle.dumps({"data": _RunsCode(marker), "labels": [0]}, protocol=2))
    code = main(["train", "--data-set", "CIFAR10", "--data-path", str(tmp_path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert f"{target}: refused as a CIFAR pickle: it names posix.system" in err and "Traceback" not in err


def test_other_globals_and_wrong_contents_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": Path("x")}))  # a harmless class, still not a CIFAR value
    with pytest.raises(DeitError, match="it names pathlib"):
        load_cifar_pickle(path)
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DeitError, match="holds a list, not the dict"):
        load_cifar_pickle(path)
    path.write_bytes(pickle.dumps({"data": np.array([Path("x")], dtype=object)})[:-9])
    with pytest.raises(DeitError, match="refused as a CIFAR pickle"):
        load_cifar_pickle(path)


def test_wrong_labels_name_the_file(tmp_path: Path) -> None:
    write_pickled_cifar(tmp_path, 10)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    payload = pickle.loads(batch.read_bytes())
    payload["labels"][0] = 10
    batch.write_bytes(pickle.dumps(payload))
    with pytest.raises(DeitError, match=f"{batch}: a label is not an integer in \\[0, 10\\)"):
        build_dataset("CIFAR10", str(tmp_path), train=False, transform=None)


def test_an_incomplete_pickled_folder_is_named(tmp_path: Path) -> None:
    write_pickled_cifar(tmp_path, 10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DeitError, match="torchvision's pickled layout but lacks data_batch_3"):
        build_dataset("CIFAR10", str(tmp_path), train=True, transform=None)


def test_a_pickled_cifar10_folder_trains(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_pickled_cifar(tmp_path / "data", 10, per_batch=4)
    tiny = '{"depth": 1, "patch_size": 8, "embed_dim": 32, "num_heads": 2}'
    argv = ["train", "--data-set", "CIFAR10", "--data-path", str(tmp_path / "data"), "--device", "cpu"]
    argv += ["--model", "deit_tiny_patch16_224", "--model-kwargs", tiny, "--input-size", "32", "--epochs", "1"]
    argv += [
        "--batch-size",
        "8",
        "--num_workers",
        "0",
        "--warmup-epochs",
        "0",
        "--unscale-lr",
        "--output_dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "20 train / 4 val images, 10 classes" in out and (tmp_path / "run" / "checkpoint.pth").is_file()
