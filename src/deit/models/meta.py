"""The `deit` meta a checkpoint carries: one typed record that training and exports write and every reader
(predict, eval, export, analyze, the teacher) reads. On disk it stays the plain dict of docs/checkpoints.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

from deit.errors import DeitError
from deit.models.meta_check import check_meta_fields, validate_meta
from deit.models.registry import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class CheckpointMeta:
    """What it takes to use a checkpoint alone: the model to rebuild, its eval preprocessing, its class names."""

    model: str
    num_classes: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    input_size: int | None = None  # None: the model's own img_size (files written before the key existed)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    class_names: tuple[str, ...] = ()
    distilled: bool = False
    deit_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept on re-save

    def to_dict(self) -> dict[str, Any]:
        """The on-disk layout (JSON types only): the keys above at top level, `extra` merged back in."""
        data = {
            "model": self.model,
            "model_kwargs": dict(self.model_kwargs),
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "class_names": list(self.class_names),
            "distilled": self.distilled,
            "deit_version": self.deit_version,
        }
        return {**self.extra, **data}

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str, state_dict: dict[str, Tensor] | None = None
    ) -> CheckpointMeta:
        """Read untrusted meta; a bad value is a DeitError naming `source` and the key. With `state_dict`, the
        architecture the meta claims is also checked against the tensors (before any model is built)."""
        if not isinstance(data, Mapping):
            raise DeitError(f"{source}: meta must be a mapping, got {type(data).__name__}")
        data = dict(data)
        if state_dict is not None:
            validate_meta(data, state_dict, source=source)
        else:
            check_meta_fields(data, source=source)
        known = {f.name for f in fields(cls)} - {"extra"}
        present = {key: value for key, value in data.items() if key in known and value is not None}
        for key in ("mean", "std", "class_names"):
            if key in present:
                present[key] = tuple(present[key])
        present["model_kwargs"] = dict(present.get("model_kwargs") or {})
        if "crop_pct" in present:
            present["crop_pct"] = float(present["crop_pct"])
        return cls(**present, extra={key: value for key, value in data.items() if key not in known})

    def labels(self, num_classes: int | None = None) -> list[str]:
        """The class names, or the indices as strings when the file has none (or a count other than the model's)."""
        count = self.num_classes if num_classes is None else num_classes
        if self.class_names and len(self.class_names) == count:
            return [str(name) for name in self.class_names]
        return [str(index) for index in range(count)]
