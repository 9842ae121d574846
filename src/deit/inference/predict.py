"""Top-k classes for image files and folders, with the checkpoint's own preprocessing (`deit predict`'s library).

An unreadable input does not stop the others: its `Prediction` carries the error instead of classes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from deit.data import read_image
from deit.errors import DeitError
from deit.flag_bounds import check_bounds
from deit.inference.preprocess import EvalPreprocessing, load_inference_model, with_crop_ratio
from deit.models.meta import CheckpointMeta


@dataclass
class Prediction:
    """One input's top-k classes (best first), or why it could not be read."""

    path: str
    classes: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was read and predicted."""
        return self.error is None

    def to_json(self) -> dict:
        """Plain data for `--json`."""
        if not self.ok:
            return {"path": self.path, "error": self.error}
        top = [
            {"class": c, "index": i, "probability": p}
            for c, i, p in zip(self.classes, self.indices, self.probabilities)
        ]
        return {"path": self.path, "topk": top}


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders walked recursively (sorted, hidden entries skipped), every file an input."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
            files.append(path)  # missing or unreadable files and folders are reported when read, one by one
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not found:
            raise DeitError(f"{path}: folder holds no files")
        files.extend(found)
    return files


class _ImageFiles(Dataset):
    """Decodes and preprocesses one file per item; a bad file yields its error instead of raising."""

    def __init__(self, files: Sequence[Path], preprocessing: EvalPreprocessing) -> None:
        self.files = list(files)
        self.transform = preprocessing.transform()
        self.size = preprocessing.input_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.transform(read_image(self.files[index])), None
        except DeitError as error:
            return index, None, str(error)


def _collate(items: list[tuple[int, torch.Tensor | None, str | None]]) -> list:
    return items  # batches are assembled after the bad items are set aside


def _load_predictor(
    checkpoint: str | Path, device: str | torch.device | None, crop_pct: float | None = None
) -> tuple[Callable[[torch.Tensor], torch.Tensor], CheckpointMeta, torch.device]:
    """The model (or, for an `.onnx` export, its ONNX Runtime session), its meta and the device to feed."""
    path = Path(checkpoint)
    if path.suffix.lower() != ".onnx":
        return load_inference_model(path, device, crop_pct=crop_pct)
    if not path.is_file():
        raise DeitError(f"--checkpoint {path}: no such file")
    from deit.export.onnx_meta import read_onnx_meta
    from deit.export.onnx_runtime import OnnxRuntimeModel

    runner = OnnxRuntimeModel(path)
    return runner, with_crop_ratio(read_onnx_meta(path, runner.session), crop_pct), torch.device("cpu")


def _default_workers(num_files: int, batch_size: int) -> int:
    # Worker start-up costs more than it saves on a handful of images.
    return 0 if num_files < 2 * batch_size else min(4, os.cpu_count() or 1)


@torch.inference_mode()
def predict(
    checkpoint: str | Path,
    paths: Sequence[str | Path],
    topk: int = 5,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    workers: int | None = None,
    progress: bool = False,
    eval_crop_ratio: float | None = None,
) -> list[Prediction]:
    """Top-k fused-head predictions for each file (folders expanded); unreadable files carry `error`;
    `eval_crop_ratio`: the centre crop's ratio instead of the one the checkpoint records."""
    check_bounds("predict", topk=topk, batch_size=batch_size, workers=workers)
    files = expand_inputs(paths)
    if not files:
        raise DeitError("no input images given")
    model, meta, resolved = _load_predictor(checkpoint, device, eval_crop_ratio)
    num_classes = int(getattr(model, "num_classes", 0) or meta.num_classes)
    names = meta.labels(num_classes)
    dataset = _ImageFiles(files, EvalPreprocessing.from_meta(meta, model))
    workers = _default_workers(len(files), batch_size) if workers is None else workers
    predictions: list[Prediction | None] = [None] * len(files)

    from tqdm import tqdm

    with tqdm(total=len(files), desc="predict", unit="img", file=sys.stderr, disable=None if progress else True) as bar:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate)
        for batch in loader:
            good = [(index, image) for index, image, _ in batch if image is not None]
            for index, _, error in batch:
                if error is not None:
                    predictions[index] = Prediction(str(files[index]), error=error)
            if good:
                images = torch.stack([image for _, image in good]).to(resolved)
                probabilities = model(images).float().softmax(dim=-1)
                top_p, top_i = probabilities.topk(min(topk, probabilities.shape[-1]), dim=-1)
                finite = probabilities.isfinite().all(dim=-1).cpu().tolist()
                for (index, _), p_row, i_row, ok in zip(good, top_p.cpu().tolist(), top_i.cpu().tolist(), finite):
                    if not ok:  # NaN probabilities are no prediction: report them as a failure, never print them
                        predictions[index] = Prediction(
                            str(files[index]),
                            error=f"{files[index]}: the model's output is not finite (NaN or inf); no prediction",
                        )
                        continue
                    classes = [names[i] if i < len(names) else str(i) for i in i_row]
                    predictions[index] = Prediction(str(files[index]), classes, i_row, p_row)
            bar.update(len(batch))
    return [p for p in predictions if p is not None]


__all__ = ["Prediction", "expand_inputs", "predict"]
