"""Stored teacher outputs: what each kind keeps, and a damaged or hostile label folder refused in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from deit.distill.teacher_labels import (
    LabelWriter,
    Layout,
    TeacherLabels,
    decode,
    encode,
    rest_logit,
    topk_kl,
    write_manifest,
)
from deit.errors import DeitError


def _logits(steps: int = 2, batch: int = 4, classes: int = 7) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, classes, generator=generator) * 3 for _ in range(steps)]


def _write(folder: Path, layout: Layout, steps: list[torch.Tensor], tau: float = 1.0) -> None:
    writer = LabelWriter(folder, 0, layout, tau)
    for logits in steps:
        writer.add(logits)
    manifest = {
        "format": "deit-teacher-labels",
        "format_version": 1,
        "stream": {"world_size": 1},
        "teacher": {"model": "t"},
        "layout": layout.to_dict(),
        "tau": tau,
        "digests": {"rank0": writer.close()},
    }
    write_manifest(folder, manifest)


@pytest.mark.parametrize("kind", ["hard", "logits", "topk"])
def test_each_kind_reads_back_what_the_loss_needs(tmp_path: Path, kind: str) -> None:
    steps = _logits()
    layout = Layout(kind=kind, classes=7, epochs=1, steps=2, batch=4, k=3 if kind == "topk" else 0)
    _write(tmp_path, layout, steps)
    labels = TeacherLabels(tmp_path, 0)
    labels.verify([0])
    for step, logits in enumerate(steps):
        read = labels.outputs(0, step)
        if kind == "hard":
            assert read.dtype == torch.int64 and torch.equal(read, logits.argmax(-1))
        elif kind == "logits":
            assert torch.equal(read, logits)  # every bit
        else:
            assert torch.equal(read.argmax(-1), logits.argmax(-1))
            top = logits.topk(3, dim=-1)
            assert torch.equal(read.gather(1, top.indices), top.values)


def test_topk_keeps_the_other_classes_total_mass_at_its_temperature() -> None:
    logits = _logits(1, 5, 20)[0]
    layout, tau = Layout(kind="topk", classes=20, epochs=1, steps=1, batch=5, k=4), 2.0
    rebuilt = decode(encode(logits, layout, tau), layout)
    full, approx = (torch.softmax(x / tau, dim=-1) for x in (logits, rebuilt))
    top = logits.topk(4, dim=-1).indices
    assert torch.allclose(full.gather(1, top), approx.gather(1, top), atol=1e-6)  # so the rest's mass too
    assert float(topk_kl(logits, layout, tau)) > 0  # but spread evenly over the rest: something is lost
    everything_else_minus_inf = torch.tensor([[5.0, 1.0, float("-inf"), float("-inf")]])
    assert math.isfinite(float(rest_logit(everything_else_minus_inf, torch.tensor([[0, 1]]), 1.0)))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    _write(tmp_path, Layout(kind="logits", classes=7, epochs=2, steps=1, batch=4), _logits())
    return tmp_path


def test_a_truncated_file_is_refused_at_open(folder: Path) -> None:
    path = folder / "rank0.logits.bin"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DeitError, match=r"rank0.logits.bin is 220 bytes, the manifest says 224 \(truncated"):
        TeacherLabels(folder, 0)


def test_an_edited_byte_is_refused_naming_file_and_epoch(folder: Path) -> None:
    path = folder / "rank0.logits.bin"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    labels = TeacherLabels(folder, 0)
    labels.verify([0])  # the first epoch is intact
    with pytest.raises(DeitError, match="rank0.logits.bin epoch 2 does not match its sha256"):
        labels.verify([0, 1])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["layout"].update(steps=2**50), r"layout 'steps' 1125899906842624 is not an integer"),
        (lambda m: m["layout"].update(classes=-1), "layout 'classes' -1"),
        (lambda m: m["layout"].update(kind="pickle"), "layout kind 'pickle'"),
        (lambda m: m["layout"].update(steps=2), r"is 224 bytes, the manifest says 448"),
        (lambda m: m["digests"]["rank0"].update(logits=["00"] * 2), "malformed digest"),
        (lambda m: m.update(format_version=99), "format version 99"),
        (lambda m: m.pop("digests"), "'digests' missing"),
    ],
)
def test_a_hostile_manifest_is_refused_in_one_line(folder: Path, edit, message: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DeitError, match=message) as error:
        TeacherLabels(folder, 0)
    assert "\n" not in str(error.value)


def test_an_unfinished_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeitError, match="no manifest.json"):
        TeacherLabels(tmp_path, 0)


def test_the_loss_takes_stored_classes_for_hard_and_refuses_them_for_soft() -> None:
    from deit.distill import DistillationLoss, build_base_criterion
    from deit.distill.teacher_labels import ReplayedTeacher

    z_cls, z_dist, z_t = _logits(3, 4, 7)
    labels = torch.tensor([0, 1, 2, 3])
    hard = DistillationLoss(build_base_criterion(mixup_active=False), ReplayedTeacher(), "hard", 0.5, 1.0)
    assert torch.equal(hard(None, (z_cls, z_dist), labels, z_t.argmax(-1)), hard(None, (z_cls, z_dist), labels, z_t))
    soft = DistillationLoss(build_base_criterion(mixup_active=False), ReplayedTeacher(), "soft", 0.5, 1.0)
    with pytest.raises(DeitError, match="soft distillation needs the teacher's logits"):
        soft(None, (z_cls, z_dist), labels, z_t.argmax(-1))
    with pytest.raises(DeitError, match="came without the teacher's stored outputs"):
        soft(torch.zeros(4, 3, 8, 8), (z_cls, z_dist), labels)
