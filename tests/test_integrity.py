"""Integrity on load: zip CRCs, our own content hash, finite weights, safetensors under another name."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from deit.engine.checkpointing import read_checkpoint
from deit.errors import DeitError
from deit.integrity import DIGEST_KEY, tensor_digest
from deit.io import load_torch_file


def _checkpoint(path: Path, **extra: object) -> Path:
    model = {"w": torch.arange(4096, dtype=torch.float32)}
    torch.save({"model": model, "epoch": 0, DIGEST_KEY: tensor_digest(model), **extra}, path)
    return path


def _flip_bytes_inside_tensor(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size > 1000)
    data = bytearray(path.read_bytes())
    # The local header is 30 bytes + name + extra; flip 64 bytes well inside the stored tensor.
    start = info.header_offset + 30 + len(info.filename.encode()) + 200
    data[start : start + 64] = bytes(b ^ 0xFF for b in data[start : start + 64])
    path.write_bytes(bytes(data))


def test_a_bit_flipped_checkpoint_is_refused(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path / "ck.pth")
    _flip_bytes_inside_tensor(path)
    with pytest.raises(DeitError, match="damaged"):
        load_torch_file(path)


def test_the_content_hash_catches_changes_the_zip_cannot_see(tmp_path: Path) -> None:
    path = tmp_path / "ck.pth"
    torch.save({"model": {"w": torch.ones(3)}, "epoch": 0, DIGEST_KEY: tensor_digest({"w": torch.zeros(3)})}, path)
    with pytest.raises(DeitError, match="content hash"):
        read_checkpoint(path)
    _checkpoint(path)
    assert read_checkpoint(path)["epoch"] == 0  # a correct hash loads; a foreign file without one loads too


def test_nan_weights_are_refused_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "ck.pth"
    torch.save({"model": {"w": torch.tensor([1.0, float("nan")])}, "epoch": 0}, path)
    with pytest.raises(DeitError, match="non-finite weights"):
        read_checkpoint(path)


def test_safetensors_named_pth_is_read_as_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from deit.models.checkpoint import read_state_dict

    path = tmp_path / "weights.pth"
    save_file({"w": torch.ones(2)}, str(path))
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))  # not "pickled Python objects"


def test_the_content_hash_of_saved_checkpoints_does_not_drift() -> None:
    # Checkpoints written by earlier versions record this digest: hashing faster must hash the same bytes.
    state = {"w": torch.arange(6, dtype=torch.float32).view(2, 3), "b": torch.tensor([1, 2]), "e": torch.zeros(0)}
    assert tensor_digest(state) == "b4a3cff101d531e0c2d6a6f5e168a42fff9e9a38ae6ed435d9abaa23083a3459"
