"""`deit models`: the registered DeiT / DeiT III configurations, their size and official accuracy."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from deit.errors import DeitError
from deit.models.registry import aliases, get_model_spec, list_models


@dataclass(frozen=True)
class ModelInfo:
    """One registered model as `deit models` shows it."""

    name: str
    params: int | None  # official count, 1000 classes
    resolution: int
    distilled: bool
    top1: float | None  # official ImageNet-1k top-1
    embed_dim: int
    depth: int
    num_heads: int
    url: str | None


def models(pattern: str | None = None) -> list[ModelInfo]:
    """The registered models (optionally matching a shell pattern such as `*distilled*`), sorted by name."""
    names = list_models(pattern)
    if pattern and not names:
        raise DeitError(f"--pattern {pattern!r}: matches no registered model (see `deit models`)")
    infos = []
    for name in names:
        spec = get_model_spec(name)
        infos.append(
            ModelInfo(
                name=name,
                params=spec.params,
                resolution=spec.img_size,
                distilled=spec.distilled,
                top1=spec.top1,
                embed_dim=int(spec.kwargs["embed_dim"]),
                depth=int(spec.kwargs["depth"]),
                num_heads=int(spec.kwargs["num_heads"]),
                url=spec.url,
            )
        )
    return infos


def format_table(infos: list[ModelInfo]) -> str:
    """A fixed-width text table: name, params (M), resolution, distilled, official top-1."""
    width = max([len("name")] + [len(info.name) for info in infos])
    lines = [f"{'name':<{width}}  {'params':>8}  {'res':>4}  {'distilled':>9}  {'top-1':>5}"]
    for info in infos:
        params = f"{info.params / 1e6:.1f}M" if info.params else "-"
        top1 = f"{info.top1:.1f}" if info.top1 is not None else "-"
        lines.append(
            f"{info.name:<{width}}  {params:>8}  {info.resolution:>4}  "
            f"{'yes' if info.distilled else 'no':>9}  {top1:>5}"
        )
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit models`."""
    parser.add_argument("--pattern", default=None, help="shell-style filter, e.g. '*distilled*'")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def run(args: argparse.Namespace) -> int:
    """Run `deit models`."""
    infos = models(args.pattern)
    if args.json:
        print(json.dumps([asdict(info) for info in infos], indent=2))
    else:
        print(format_table(infos))
    if not args.json and not args.pattern:
        names = ", ".join(f"{alias} = {target}" for alias, target in aliases().items())
        print(f"also accepted, the official DeiT III names (built at --input-size, LayerScale from 1e-4): {names}")
    return 0


__all__ = ["ModelInfo", "format_table", "models"]
