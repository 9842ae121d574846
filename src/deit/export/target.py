"""Where an export may write: never over its input, never over a file unless asked, only a readable extension."""

from __future__ import annotations

from pathlib import Path

from deit.errors import DeitError

# The extensions each format's own reader accepts (our loaders pick safetensors by the `.safetensors` suffix).
_EXTENSIONS = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".pth", ".ts", ".torchscript"),
    "safetensors": (".safetensors",),
}


def check_export_target(checkpoint: str | Path, output: str | Path, format: str, *, overwrite: bool = False) -> Path:
    """`output` as a Path, or a DeitError when writing it would destroy the input or a file, or be unreadable."""
    output, source = Path(output), Path(checkpoint)
    if output.is_dir():
        raise DeitError(f"--output {output}: is a folder; give a file name")
    if (
        output.exists()
        and source.exists()
        and (output.samefile(source) or (source.is_dir() and source.resolve() in output.resolve().parents))
    ):
        raise DeitError(
            f"--output {output}: is the input checkpoint {checkpoint}; an export never writes over its "
            f"input, choose another file name"
        )
    allowed = _EXTENSIONS.get(format, ())
    if allowed and output.suffix.lower() not in allowed:
        raise DeitError(
            f"--output {output}: a {format} file must end in {' or '.join(allowed)} (its reader "
            f"would refuse '{output.suffix or 'no extension'}'); nothing was written"
        )
    if output.exists() and not overwrite:
        raise DeitError(f"--output {output}: already exists; pass --overwrite to replace it")
    return output


def check_export_folder(checkpoint: str | Path, output: str | Path, *, overwrite: bool = False) -> Path:
    """`output` for a folder export (hf, timm): never the folder holding the input, never a non-empty folder
    unless asked, never a file."""
    output, source = Path(output), Path(checkpoint).resolve()
    if output.exists() and not output.is_dir():
        raise DeitError(f"--output {output}: is a file; a folder export needs a folder name")
    if output.exists() and (output.resolve() == source or output.resolve() in source.parents):
        raise DeitError(
            f"--output {output}: holds the input checkpoint {checkpoint}; an export never writes over "
            f"its input, choose another folder"
        )
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise DeitError(f"--output {output}: is not empty; pass --overwrite to write into it")
    return output
