"""Checkpoints in and out: our training checkpoints and safetensors exports, official/timm files, HF directories.

State dicts only: read, adapt to a given model, write. Building a model from a file is `deit.models.factory`'s.

Nothing here unpickles arbitrary objects: `.pth`/`.bin` go through `torch.load(weights_only=True)`, the rest is
safetensors and JSON. Every refusal is a one-line DeitError naming the file (and the key, where one is at fault).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from deit.errors import DeitError
from deit.integrity import check_finite, looks_like_safetensors
from deit.io import atomic_write, dumps_strict, load_torch_file, require_regular_file
from deit.models import hf_convert
from deit.models.meta import CheckpointMeta
from deit.models.registry import get_model_spec, is_registered
from deit.models.state_fit import check_key_names, check_shapes
from deit.version import __version__

Source = str | Path
_HEAD_PREFIXES = ("head.", "head_dist.")
_CONTAINER_KEYS = ("model", "state_dict", "model_ema")  # official / Lightning-style / EMA-only wrappers


# ---------------------------------------------------------------- reading


def read_state_dict(source: Source) -> dict[str, Tensor]:
    """The weights in `source` (.pth/.pt/.bin, .safetensors or a Hugging Face directory), under our key names."""
    path = Path(source)
    if path.is_dir():
        return _read_directory(path)[0]
    payload, _ = _read_file(path)
    return extract_state_dict(payload, source=str(path))


def extract_state_dict(payload: Any, *, source: str) -> dict[str, Tensor]:
    """Unwrap `{'model': ...}`-style containers and rename timm/HF/official DeiT III keys to ours."""
    state_dict = payload
    if isinstance(payload, dict) and not _all_tensors(payload):
        state_dict = next((payload[key] for key in _CONTAINER_KEYS if isinstance(payload.get(key), dict)), None)
    if not isinstance(state_dict, dict) or not state_dict:
        raise DeitError(f"{source}: holds no state dict (expected tensors, or one under 'model'/'state_dict')")
    if not _all_tensors(state_dict):
        bad = next(key for key, value in state_dict.items() if not isinstance(value, Tensor))
        raise DeitError(f"{source}: entry '{bad}' is not a tensor")
    if all(key.startswith("module.") for key in state_dict):  # saved from a DistributedDataParallel wrapper
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    if hf_convert.looks_like_hf_state_dict(state_dict):
        state_dict = hf_convert.convert_hf_state_dict(state_dict, source=source)
    # Official DeiT III blocks hold LayerScale as `gamma_1`/`gamma_2`; ours (and timm's) as `ls1.gamma`/`ls2.gamma`.
    return {re.sub(r"^(blocks\.\d+)\.gamma_([12])$", r"\1.ls\2.gamma", key): value for key, value in state_dict.items()}


def read_file_with_meta(path: Path) -> tuple[Any, dict[str, Any] | None]:
    """One safe read of a checkpoint file: its payload, and the deit meta it carries (export or training) if any."""
    payload, metadata = _read_file(path)
    meta = _export_meta(metadata, path)
    if meta is None and isinstance(payload, dict) and payload.get("meta") is not None:
        meta = payload["meta"]
        if not isinstance(meta, dict):  # never guessed around: the model would be rebuilt from the shapes alone
            raise DeitError(f"{path}: its 'meta' is a {type(meta).__name__}, not the mapping a deit checkpoint holds")
    return payload, meta


def _read_file(path: Path) -> tuple[Any, dict[str, str] | None]:
    require_regular_file(path)  # sniffing the header opens it: a FIFO would block here forever
    if path.suffix == ".safetensors" or looks_like_safetensors(path):  # a safetensors file under another name
        return _read_safetensors(path)
    return load_torch_file(path), None


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    require_regular_file(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except Exception as error:  # safetensors raises its own SafetensorError, OSError, ValueError ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeitError(f"{path}: cannot be read as safetensors: {reason}") from error


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The header metadata of a safetensors file (no tensor is read); {} when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the full read that follows
        return {}


def _read_directory(directory: Path) -> tuple[dict[str, Tensor], hf_convert.HfModelConfig | None, dict | None]:
    """(state dict, HF config or None, deit meta or None) of a HF `save_pretrained` dir or an export dir."""
    export = directory / "model.safetensors"
    # Our timm export has a timm config.json too, but its weights carry our meta (heads, classes, preprocessing).
    if export.is_file() and ("deit" in _safetensors_metadata(export) or not (directory / "config.json").is_file()):
        tensors, metadata = _read_safetensors(export)
        return extract_state_dict(tensors, source=str(export)), None, _export_meta(metadata, export)
    if (directory / "config.json").is_file():
        config = hf_convert.read_hf_config(directory)
        merged: dict[str, Any] = {}
        for weight_file in hf_convert.hf_weight_files(directory):
            payload, _ = _read_file(weight_file)
            if not isinstance(payload, dict) or not _all_tensors(payload):
                raise DeitError(f"{weight_file}: expected a flat mapping of tensor names to tensors")
            merged.update(payload)
        return extract_state_dict(merged, source=str(directory)), config, None
    raise DeitError(f"{directory}: neither a Hugging Face directory (config.json) nor an export (model.safetensors)")


def _all_tensors(mapping: dict[Any, Any]) -> bool:
    return all(isinstance(value, Tensor) for value in mapping.values())


# ---------------------------------------------------------------- a trained model's weights and meta


def read_trained_weights(
    path: Source, *, use_ema: bool = False
) -> tuple[dict[str, Tensor], hf_convert.HfModelConfig | None, CheckpointMeta | None]:
    """(state dict, HF config or None, deit meta or None) of a trained model's file or directory, checked.

    The tensors are checked finite and the meta against the tensors (it is untrusted) before anyone builds a
    model from them. `use_ema` picks the EMA weights (`model_ema`) of a `deit train` or official `main.py`
    training checkpoint, and refuses a file without them in one line.
    """
    path = Path(path)
    source = str(path)
    hf_config = meta = None
    if path.is_dir():
        if use_ema:
            _ema_weights(None, path)
        state_dict, hf_config, meta = _read_directory(path)
    else:
        payload, meta = read_file_with_meta(path)
        if use_ema:
            payload = _ema_weights(payload, path)
        elif isinstance(payload, dict) and isinstance(payload.get("meta"), dict):  # a `deit train` checkpoint
            if "model" not in payload:
                raise DeitError(f"{path}: has no 'model' weights")
            payload = payload["model"]
        state_dict = extract_state_dict(payload, source=source)
    check_finite(state_dict, source=source)
    if meta is not None:
        # Checked against the tensors before any allocation: the meta is untrusted.
        return state_dict, hf_config, CheckpointMeta.from_dict(meta, source=source, state_dict=state_dict)
    return state_dict, hf_config, None


def _ema_weights(payload: Any, path: Path) -> Any:
    # A training checkpoint (ours or official main.py's) keeps the EMA beside `model`; without this lookup the
    # generic unwrapping would pick `model` first and the EMA request would be ignored without a word.
    if isinstance(payload, dict) and isinstance(payload.get("model_ema"), dict) and payload["model_ema"]:
        return payload["model_ema"]
    raise DeitError(
        f"{path}: holds no EMA weights ('model_ema'; trained without EMA, or not a training "
        "checkpoint): drop --ema / use_ema to evaluate its weights"
    )


def default_meta(
    name: str,
    *,
    img_size: int,
    num_classes: int,
    model_kwargs: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    source: str | None = None,
    **preprocessing: Any,
) -> CheckpointMeta:
    """Meta for weights without a training record: registry preprocessing; ImageNet or `class_<i>` names."""
    spec = get_model_spec(name) if is_registered(name) else None
    kwargs = dict(model_kwargs or {})
    if class_names is None:
        class_names = _imagenet_class_names() if num_classes == 1000 and spec is not None else None
        class_names = class_names or [f"class_{index}" for index in range(num_classes)]
    data = {
        "model": name,
        "model_kwargs": kwargs,
        "input_size": int(img_size),
        "num_classes": int(num_classes),
        **({"mean": spec.mean, "std": spec.std, "crop_pct": spec.crop_pct} if spec else {}),
        **preprocessing,
        "class_names": list(class_names),
        "deit_version": __version__,
        "distilled": bool(kwargs.get("distilled", spec.distilled if spec else False)),
    }
    return CheckpointMeta.from_dict(data, source=source or name)  # HF preprocessing files are untrusted too


def _imagenet_class_names() -> list[str] | None:
    # torchvision ships the 1000 ImageNet-1k names (in the index order every DeiT release uses) offline.
    try:
        from torchvision.models import ResNet50_Weights

        return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    except Exception:  # an old/odd torchvision: generic names are still correct, just less friendly
        return None


# ---------------------------------------------------------------- loading into an existing model


def load_pretrained(model: nn.Module, source: Source) -> None:
    """Load the weights of a file or HF directory into `model` (`create_model(pretrained=True)` fetches the file).

    A different class count drops both heads (with a warning); a different resolution resamples the position
    embedding the way the official fine-tuning code does. Any other mismatch is a DeitError naming the keys.
    """
    path = Path(source)
    state_dict = adapt_state_dict(read_state_dict(path), model, source=str(path))
    model.load_state_dict(state_dict, strict=False)


def adapt_state_dict(state_dict: dict[str, Tensor], model: nn.Module, *, source: str) -> dict[str, Tensor]:
    """Fit `state_dict` to `model`: drop mismatched heads, resample pos_embed; refuse anything else."""
    state_dict = dict(state_dict)
    target = model.state_dict()
    if _heads_differ(state_dict, target):
        had = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0
        warnings.warn(
            f"{source}: checkpoint has {had} classes, the model {getattr(model, 'num_classes', '?')}: "
            "its heads are dropped and the model's stay freshly initialised",
            stacklevel=3,
        )
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith(_HEAD_PREFIXES)}
        optional = {key for key in target if key.startswith(_HEAD_PREFIXES)}
    else:
        optional = set()
    check_key_names(state_dict, target, optional=optional, source=source)
    if "pos_embed" in target and state_dict["pos_embed"].shape != target["pos_embed"].shape:
        num_prefix = target["pos_embed"].shape[1] - model.patch_embed.num_patches
        state_dict["pos_embed"] = resample_pos_embed(
            state_dict["pos_embed"], num_prefix_tokens=num_prefix, grid_size=model.patch_embed.grid_size, source=source
        )
    check_shapes(state_dict, target, source=source)
    return state_dict


def _heads_differ(state_dict: dict[str, Tensor], target: dict[str, Tensor]) -> bool:
    ours, theirs = target.get("head.weight"), state_dict.get("head.weight")
    if ours is None or theirs is None:
        return (ours is None) != (theirs is None)
    return ours.shape[0] != theirs.shape[0]  # a different width is a mis-shape, not a new label set


def resample_pos_embed(
    pos_embed: Tensor, *, num_prefix_tokens: int, grid_size: int, source: str = "pos_embed"
) -> Tensor:
    """The official fine-tuning resampling: prefix rows kept, the patch grid resized bicubically."""
    from timm.layers import resample_abs_pos_embed  # lazy: timm costs seconds at `import deit`

    length = pos_embed.shape[1] - num_prefix_tokens
    old_grid = math.isqrt(max(length, 0))
    if length <= 0 or old_grid * old_grid != length:
        raise DeitError(
            f"{source}: pos_embed has {pos_embed.shape[1]} rows, which is not {num_prefix_tokens} "
            "prefix row(s) plus a square grid"
        )
    # The official recipe interpolates without antialiasing (timm's default is on), so turn it off to match.
    return resample_abs_pos_embed(
        pos_embed,
        [grid_size, grid_size],
        [old_grid, old_grid],
        num_prefix_tokens=num_prefix_tokens,
        interpolation="bicubic",
        antialias=False,
        align_corners=False,
    )


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, Tensor], *, source: str) -> None:
    """`model.load_state_dict(strict=True)` whose failure is a one-line DeitError naming the keys."""
    target = model.state_dict()
    check_key_names(state_dict, target, optional=set(), source=source)
    check_shapes(state_dict, target, source=source)
    model.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------- writing


def save_weights(model: nn.Module, path: Source, meta: CheckpointMeta) -> None:
    """Write `model`'s weights as safetensors with `meta` as JSON under the metadata key "deit" (atomically)."""
    from safetensors.torch import save_file

    try:
        meta_json = dumps_strict(meta.to_dict())
    except (TypeError, ValueError) as error:
        raise DeitError(f"{path}: meta is not JSON-serialisable: {error}") from error
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt", "deit": meta_json}))


def _export_meta(metadata: dict[str, str] | None, path: Path) -> dict[str, Any] | None:
    if not metadata or "deit" not in metadata:
        return None
    try:
        meta = json.loads(metadata["deit"])
    except json.JSONDecodeError as error:
        raise DeitError(f"{path}: its 'deit' metadata is not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise DeitError(f"{path}: its 'deit' metadata is not a JSON object")
    return meta
