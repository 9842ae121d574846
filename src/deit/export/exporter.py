"""A checkpoint to ONNX, TorchScript or safetensors, checked against PyTorch after writing (`deit export`'s library).

Exported graphs take `(batch, 3, size, size)` normalised images (batch dynamic) and return the fused logits
(the eval-mode output: the average of the class and distillation heads for a distilled model).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from deit.errors import DeitError
from deit.export.export_output import ExportRefused, failed_name, staged_file, staged_folder
from deit.export.model_card import DEFAULT_LICENSE
from deit.export.onnx_meta import onnx_properties, write_onnx_properties
from deit.export.onnx_runtime import QUANTIZE_CHOICES, require_onnx
from deit.export.target import check_export_folder, check_export_target
from deit.flag_bounds import check_bounds
from deit.inference.agreement import DEFAULT_MIN_AGREEMENT, Agreement, checkpoint_agreement, recorded_data
from deit.inference.preprocess import load_inference_model
from deit.models.meta import CheckpointMeta

FORMATS = ("onnx", "torchscript", "safetensors")
FOLDER_FORMATS = ("hf", "timm")  # written as a folder by their own modules (export_hf, export_timm)
DEFAULT_TOLERANCE = 1e-4


@dataclass
class ExportReport:
    """What was written, by which exporter, and how far its outputs are from PyTorch's."""

    format: str
    output: Path
    exporter: str
    input_shape: tuple[int, int, int]
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    notes: list[str] = field(default_factory=list)
    quantize: str = "none"
    agreement: Agreement | None = None
    min_agreement: float = DEFAULT_MIN_AGREEMENT

    @property
    def passed(self) -> bool:
        """Whether the exported model matches PyTorch: within the tolerance (fp32), or on top-1 (int8)."""
        if self.quantize != "none":  # int8 logits differ by design; what must hold is the predicted class
            return self.agreement is None or self.agreement.rate >= self.min_agreement
        return self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        """A short human-readable account, one fact per line."""
        sizes = ", ".join(str(b) for b in self.batch_sizes)
        lines = [
            f"wrote {self.output} ({self.format}, {self.exporter})",
            f"input: (batch, {', '.join(str(d) for d in self.input_shape)}) float32, output: fused logits",
            f"verified at batch sizes {sizes}: max |diff| vs PyTorch = {self.max_abs_diff:.3e} "
            f"(tolerance {self.tolerance:.0e}) {'OK' if self.passed else 'FAILED'}",
        ]
        if self.quantize != "none":
            lines[-1] = (
                f"verified at batch sizes {sizes}: max |diff| vs PyTorch fp32 = {self.max_abs_diff:.3e} "
                f"({self.quantize}: logits differ by design; the check is top-1 agreement)"
            )
            lines.append(
                self.agreement.summary() + f" (needs {100 * self.min_agreement:.1f}%)"
                if self.agreement
                else "top-1 agreement NOT measured (--no-agreement-check): this int8 model is unverified"
            )
        return "\n".join(lines + self.notes)


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    # The exporters warn about the (deliberate) shape check in PatchEmbed and their own deprecations.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _verification_inputs(input_shape: tuple[int, int, int], batch_size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sizes = sorted({1, max(2, batch_size)})
    return [torch.randn(size, *input_shape, generator=generator) for size in sizes]


def _max_abs_diff(
    model: nn.Module, inputs: Sequence[torch.Tensor], run_exported: Callable[[torch.Tensor], np.ndarray]
) -> float:
    worst = 0.0
    with torch.inference_mode():
        for images in inputs:
            expected = model(images).float().numpy()
            actual = np.asarray(run_exported(images), dtype=np.float32)
            if actual.shape != expected.shape:
                raise DeitError(
                    f"exported model returned shape {actual.shape}, PyTorch {expected.shape} (batch {images.shape[0]})"
                )
            if not (np.isfinite(expected).all() and np.isfinite(actual).all()):
                # max() would silently skip a NaN difference and report a perfect match
                raise DeitError(
                    f"non-finite outputs (NaN or inf) at batch {images.shape[0]}: "
                    f"PyTorch {'finite' if np.isfinite(expected).all() else 'non-finite'}, exported "
                    f"{'finite' if np.isfinite(actual).all() else 'non-finite'}; the export is not "
                    "verified"
                )
            worst = max(worst, float(np.abs(actual - expected).max()))
    return worst


def _export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    output: Path,
    opset: int | None,
    quantize: str,
    notes: list[str],
    properties: dict[str, str],
) -> tuple[str, Callable[[torch.Tensor], np.ndarray]]:
    from deit.export.onnx_runtime import OnnxRuntimeModel, export_int8, export_onnx

    if quantize == "none":
        exporter = export_onnx(model, example, output, opset=opset, notes=notes)
    else:
        exporter = export_int8(model, example, output, opset=opset, notes=notes) + " + ONNX Runtime int8"
    write_onnx_properties(output, properties)
    runner = OnnxRuntimeModel(output)
    return exporter, lambda images: runner(images).numpy()


def _export_torchscript(
    model: nn.Module, example: torch.Tensor, output: Path
) -> tuple[str, Callable[[torch.Tensor], np.ndarray]]:
    with _quiet_exporters():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(output))
        loaded = torch.jit.load(str(output), map_location="cpu")

    def run_loaded(images: torch.Tensor) -> np.ndarray:
        with _quiet_exporters():
            return loaded(images).float().numpy()

    return "torch.jit.trace", run_loaded


def _export_safetensors(
    model: nn.Module, meta: CheckpointMeta, output: Path
) -> tuple[str, Callable[[torch.Tensor], np.ndarray]]:
    try:
        from deit.models.checkpoint import save_weights
        from deit.models.factory import load_trained_model
    except ImportError as error:
        raise DeitError(
            "--format safetensors needs deit.models.checkpoint.save_weights, which this build lacks"
        ) from error
    save_weights(model, output, meta)
    reloaded, _ = load_trained_model(output)
    reloaded.eval()
    return "safetensors + deit meta", lambda images: reloaded(images).float().numpy()


def export(
    checkpoint: str | Path,
    format: str,
    output: str | Path,
    *,
    opset: int | None = None,
    batch_size: int = 4,
    tolerance: float = DEFAULT_TOLERANCE,
    overwrite: bool = False,
    quantize: str = "none",
    data_set: str | None = None,
    data_path: str | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    check_agreement: bool = True,
    keep_failed: bool = False,
    license: str = DEFAULT_LICENSE,
    eval_crop_ratio: float | None = None,
) -> ExportReport:
    """Export `checkpoint` to `output`, then compare with PyTorch; raises `DeitError` above `tolerance`.

    With `quantize='int8'` (ONNX only) the check is instead the top-1 agreement with the fp32 model on the
    validation split of `data_set` (default: the one the checkpoint was trained on), at least `min_agreement`;
    with neither known the export is refused unless `check_agreement=False`. Nothing exists at `output` unless
    the check passed (`keep_failed` keeps a failed file as `<name>.failed<ext>`). The preprocessing written
    with the export is the checkpoint's, its centre crop ratio replaced by `eval_crop_ratio` when given.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise DeitError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE_CHOICES)}")
    if quantize != "none" and format != "onnx":
        raise DeitError(f"--quantize {quantize} needs --format onnx")
    check_bounds("export", opset=opset, batch_size=batch_size, tolerance=tolerance, min_agreement=min_agreement)
    if format in FOLDER_FORMATS:
        return _export_folder(
            checkpoint,
            format,
            check_export_folder(checkpoint, output, overwrite=overwrite),
            tolerance,
            overwrite=overwrite,
            keep_failed=keep_failed,
            license=license,
            crop_pct=eval_crop_ratio,
        )
    if format not in FORMATS:
        raise DeitError(f"--format {format}: choose one of {', '.join(FORMATS + FOLDER_FORMATS)}")
    output = check_export_target(checkpoint, output, format, overwrite=overwrite)
    if quantize != "none" and check_agreement and not (data_set or recorded_data(checkpoint)[0]):
        raise DeitError(
            f"--quantize {quantize}: {checkpoint} records no data set, so the top-1 agreement floor "
            f"(--min-agreement) cannot be checked; give --data-set (and --data-path), or pass "
            f"--no-agreement-check to export it unchecked"
        )
    if format == "onnx":
        require_onnx()  # fail before the (slow) model load
    model, meta, _ = load_inference_model(checkpoint, "cpu", crop_pct=eval_crop_ratio)
    model = model.float()
    size = meta.input_size or int(getattr(model, "img_size", 224))
    input_shape = (3, size, size)
    # Batch 2 for the example: a batch of 1 lets exporters specialise the batch axis to a constant.
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(1))
    notes: list[str] = []
    with staged_file(output, overwrite=overwrite, keep_failed=keep_failed) as staged:
        if format == "onnx":
            exporter, run_exported = _export_onnx(
                model, example, staged, opset, quantize, notes, onnx_properties(meta, checkpoint)
            )
        elif format == "torchscript":
            exporter, run_exported = _export_torchscript(model, example, staged)
        else:
            exporter, run_exported = _export_safetensors(model, meta, staged)
        inputs = _verification_inputs(input_shape, batch_size)
        report = ExportReport(
            format,
            output,
            exporter,
            input_shape,
            tuple(x.shape[0] for x in inputs),
            _checked(lambda: _max_abs_diff(model, inputs, run_exported), output, keep_failed),
            tolerance,
            notes,
            quantize,
            min_agreement=min_agreement,
        )
        if quantize != "none" and check_agreement:
            report.agreement = _checked(
                lambda: checkpoint_agreement(
                    model,
                    meta,
                    lambda images: torch.from_numpy(run_exported(images)),
                    checkpoint=checkpoint,
                    data_set=data_set,
                    data_path=data_path,
                ),
                output,
                keep_failed,
            )
            if not report.passed:
                raise DeitError(
                    f"{output}: {report.agreement.summary()}, below --min-agreement "
                    f"{100 * min_agreement:.1f}%; {_what_was_kept(output, keep_failed)}"
                )
        elif quantize == "none" and not report.passed:
            raise DeitError(
                f"{output}: exported model differs from PyTorch by max |diff| {report.max_abs_diff:.3e} "
                f"> {tolerance:.0e}; {_what_was_kept(output, keep_failed)}"
            )
    return report


def _what_was_kept(output: Path, keep_failed: bool) -> str:
    if keep_failed:
        return f"the unverified export is kept at {failed_name(output)}"
    return "nothing was written (--keep-failed keeps the unverified export for inspection)"


_T = TypeVar("_T")


def _checked(check: Callable[[], _T], output: Path, keep_failed: bool) -> _T:
    """Run one verification step; its one-line failure also says what became of the unverified export."""
    try:
        return check()
    except ExportRefused:
        raise  # nothing was exported: no "kept" or "--keep-failed" to speak of
    except DeitError as error:
        raise DeitError(f"{error}; {_what_was_kept(output, keep_failed)}") from error


def _export_folder(
    checkpoint: str | Path,
    format: str,
    output: Path,
    tolerance: float,
    *,
    overwrite: bool,
    keep_failed: bool,
    license: str,
    crop_pct: float | None = None,
) -> ExportReport:
    if format == "hf":
        from deit.export.hf_format import export_hf as write

        exporter = "transformers save_pretrained"
    else:
        from deit.export.timm_format import export_timm as write

        exporter = "timm local-dir"
    with staged_folder(output, overwrite=overwrite, keep_failed=keep_failed) as staged:
        _, diff, size = _checked(
            lambda: write(checkpoint, staged, license=license, crop_pct=crop_pct), output, keep_failed
        )
        report = ExportReport(
            format,
            output,
            exporter,
            (3, size, size),
            (2,),
            diff,
            tolerance,
            [f"verified by reloading {output} with {'transformers' if format == 'hf' else 'timm'}"],
        )
        if not report.passed:
            raise DeitError(
                f"{output}: the {format} export differs from PyTorch by max |diff| {diff:.3e} "
                f"> {tolerance:.0e}; {_what_was_kept(output, keep_failed)}"
            )
    return report


__all__ = ["FORMATS", "ExportReport", "export"]
