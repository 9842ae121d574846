"""CIFAR binary reader: download from a local server (MD5 checked), extracted folders, and clear errors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import tarfile
import threading

import numpy as np
import pytest

from deit.data import build_dataset
from deit.data import cifar as cifar_module
from deit.errors import DeitError


def _records(labels: list[tuple[int, ...]], seed: int) -> tuple[bytes, np.ndarray]:
    """Binary records (label bytes + planar RGB) and the HWC images they encode."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    planar = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    blob = b"".join(bytes(label) + planar[i].tobytes() for i, label in enumerate(labels))
    return blob, images


def _make_archive(directory, variant: int):
    """A miniature official archive: tiny batches, real layout. Returns (tarball, expected train/test)."""
    archive = cifar_module.CIFAR_ARCHIVES[variant]
    members, expected = {}, {"train": ([], []), "test": ([], [])}
    for split, names in (("train", archive.train_files), ("test", archive.test_files)):
        for number, name in enumerate(names):
            fine = [(number * 3 + k) % variant for k in range(3)]
            labels = [(f,) if variant == 10 else (f % 20, f) for f in fine]
            blob, images = _records(labels, seed=number + (0 if split == "train" else 100))
            members[f"{archive.folder}/{name}"] = blob
            expected[split][0].append(images)
            expected[split][1].extend(fine)
    names = [f"name_{index}" for index in range(variant)]
    members[f"{archive.folder}/{archive.names_file}"] = ("\n".join(names) + "\n\n").encode()
    members[f"{archive.folder}/readme.html"] = b"<html/>"
    tarball = directory / archive.filename
    with tarfile.open(tarball, "w:gz") as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return tarball, {split: (np.concatenate(images), labels) for split, (images, labels) in expected.items()}, names


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields (folder, base URL, request log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def _point_at(monkeypatch, variant, url, md5):
    archive = dataclasses.replace(cifar_module.CIFAR_ARCHIVES[variant], url=url, md5=md5)
    monkeypatch.setitem(cifar_module.CIFAR_ARCHIVES, variant, archive)


@pytest.mark.parametrize("variant, name", [(10, "CIFAR10"), (100, "CIFAR")])
def test_download_then_read_records(tmp_path, monkeypatch, served, variant, name):
    folder, base, requests = served
    tarball, expected, class_names = _make_archive(folder, variant)
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    _point_at(monkeypatch, variant, f"{base}/{tarball.name}", md5)
    root = tmp_path / "data"
    train = build_dataset(name, str(root), train=True, transform=None, download=True)
    test = build_dataset(name, str(root), train=False, transform=None, download=False)
    assert train.classes == class_names and len(train.classes) == variant
    for dataset, split in ((train, "train"), (test, "test")):
        images, labels = expected[split]
        assert len(dataset) == len(labels) and dataset.targets == labels
        for index in (0, len(labels) - 1):
            image, label = dataset[index]
            assert image.mode == "RGB" and image.size == (32, 32) and label == labels[index]
            assert np.array_equal(np.asarray(image), images[index])
    assert not (root / cifar_module.CIFAR_ARCHIVES[variant].folder / "readme.html").exists()  # only expected files
    fetched = len(requests)
    build_dataset(name, str(root), train=True, transform=None, download=True)  # present: no new download
    assert len(requests) == fetched


def test_extracted_folder_works_offline_even_as_data_path(tmp_path):
    tarball, expected, _ = _make_archive(tmp_path, 10)
    with tarfile.open(tarball) as bundle:
        bundle.extractall(tmp_path / "data", filter="data")
    for data_path in (tmp_path / "data", tmp_path / "data/cifar-10-batches-bin"):
        dataset = build_dataset("CIFAR10", str(data_path), train=False, transform=None)
        assert dataset.targets == expected["test"][1]


def test_missing_data_says_to_pass_download(tmp_path):
    with pytest.raises(DeitError) as caught:
        build_dataset("CIFAR", str(tmp_path), train=True, transform=None)
    message = str(caught.value)
    assert "--download" in message and str(tmp_path) in message and "\n" not in message
    with pytest.raises(DeitError, match="needs --data-path"):
        build_dataset("CIFAR10", None, train=True, transform=None, download=True)


def test_checksum_mismatch_is_refused_and_removed(tmp_path, monkeypatch, served):
    folder, base, _ = served
    tarball, _, _ = _make_archive(folder, 10)
    _point_at(monkeypatch, 10, f"{base}/{tarball.name}", "0" * 32)
    with pytest.raises(DeitError, match="MD5"):
        build_dataset("CIFAR10", str(tmp_path / "data"), train=True, transform=None, download=True)
    assert not (tmp_path / "data" / tarball.name).exists()


def test_unreachable_server_is_a_deit_error(tmp_path, monkeypatch, served):
    _, base, _ = served
    _point_at(monkeypatch, 100, f"{base}/nothing-here.tar.gz", "0" * 32)
    with pytest.raises(DeitError, match="could not fetch"):
        build_dataset("CIFAR100", str(tmp_path / "data"), train=True, transform=None, download=True)


def test_damaged_batch_file_is_named(tmp_path):
    tarball, _, _ = _make_archive(tmp_path, 100)
    with tarfile.open(tarball) as bundle:
        bundle.extractall(tmp_path, filter="data")
    train_bin = tmp_path / "cifar-100-binary/train.bin"
    train_bin.write_bytes(train_bin.read_bytes()[:-5])
    with pytest.raises(DeitError, match="train.bin: .* not a whole number of 3074-byte"):
        build_dataset("CIFAR", str(tmp_path), train=True, transform=None)
