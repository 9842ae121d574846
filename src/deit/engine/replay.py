"""`deit train --teacher-labels DIR`: the stored teacher outputs checked against the run, and what the run says.

Refused in one line, naming the difference: a stream other than the run's (seed, batch, world size, data,
augmentation, loader), another teacher (name, or the file's sha256 when `--teacher-path` is given), other
classes, too few epochs or steps, hard labels for soft distillation, and a truncated or edited file (sizes at
open, sha256 per epoch before training). Where replay is not the teacher per step bit for bit, the first lines
say what differs and by how much.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deit.distill.teacher_labels import TeacherLabels
from deit.engine.config import TrainConfig
from deit.engine.stream import first_difference
from deit.errors import DeitError
from deit.integrity import source_sha256
from deit.models.download import is_url


def open_replay(
    config: TrainConfig,
    identity: dict[str, Any],
    *,
    rank: int,
    steps: int,
    num_classes: int,
    precision: str,
) -> tuple[TeacherLabels, list[str]]:
    """This rank's stored outputs for the run of `config` whose stream is `identity`, and the lines that say so."""
    folder = Path(config.teacher_labels)
    where = f"--teacher-labels {folder}"
    labels = TeacherLabels(folder, rank)
    manifest, layout = labels.manifest, labels.layout
    difference = first_difference(manifest["stream"], identity)
    if difference:
        raise DeitError(f"{where}: {difference}")
    teacher = manifest["teacher"]
    if teacher.get("model") != config.teacher_model:
        raise DeitError(
            f"{where}: --teacher-model: the labels were computed with {teacher.get('model')!r}, "
            f"this run has {config.teacher_model!r}"
        )
    local_file = config.teacher_path and not is_url(config.teacher_path)  # a URL's download is not fetched here
    if local_file and source_sha256(config.teacher_path) != teacher.get("file_sha256"):
        raise DeitError(f"{where}: --teacher-path {config.teacher_path} is not the file the labels were computed with")
    if layout.classes != num_classes:
        raise DeitError(f"{where}: the labels are over {layout.classes} classes, the data has {num_classes}")
    if layout.kind == "hard" and config.distillation_type == "soft":
        raise DeitError(f"{where}: holds hard labels (the teacher's classes); soft distillation needs its logits")
    if config.epochs > layout.epochs:
        raise DeitError(f"{where}: covers {layout.epochs} epochs, this run has --epochs {config.epochs}")
    if steps > layout.steps:
        raise DeitError(f"{where}: covers {layout.steps} steps per epoch, this run takes {steps}")
    labels.verify(range(config.start_epoch, config.epochs))
    what = {"hard": "the teacher's class", "logits": "every logit", "topk": f"the top {layout.k} logits"}[layout.kind]
    lines = [
        f"teacher: replayed from {folder} ({what} per sample, {config.epochs} epochs x {steps} steps x "
        f"{layout.batch}, rank {rank}; {teacher.get('model')}, not run per step)"
    ]
    if layout.kind == "topk" and config.distillation_type == "soft":
        tau, measured = manifest.get("tau"), manifest.get("measured")
        kl = measured.get("topk_kl_per_sample") if isinstance(measured, dict) else None
        kl_text = f"{kl:.3g}" if isinstance(kl, (int, float)) else "(not recorded)"
        other_tau = tau != config.distillation_tau
        lines.append(
            f"teacher: not exact: the other {layout.classes - layout.k} classes share their probability mass "
            f"evenly (at the labels' tau {tau}); KL(teacher || stored) averages {kl_text} per sample at that tau"
            + (f"; this run's --distillation-tau {config.distillation_tau:g} differs" if other_tau else "")
        )
    if teacher.get("precision") != precision:
        lines.append(
            f"teacher: not bit-exact: the labels were computed in {teacher.get('precision')}, this run's teacher "
            f"would run in {precision}"
        )
    if int(teacher.get("steps_per_forward", 1)) > 1:
        lines.append(
            f"teacher: not bit-exact: the labels pass ran {teacher['steps_per_forward']} steps per forward, so its "
            f"logits may differ from a per-step teacher's in the last bits"
        )
    return labels, lines
