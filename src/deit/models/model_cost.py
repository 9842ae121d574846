"""What a model costs in memory, estimated from its settings before anything is allocated, and the cap on it.

A file's metadata names the architecture a reader builds; settings copied from a hostile or careless file could
ask for hundreds of gigabytes. The estimate (float32 weights plus one image's forward activations) is compared
with a stated cap that `--max-model-gb` (every subcommand) or `set_max_model_bytes` raises.
"""

from __future__ import annotations

from deit.errors import DeitError

#: The default cap: weights + one image's activations of any model a file names (ViT-g/14 is about 4.5 GB).
DEFAULT_MAX_MODEL_BYTES = 8_000_000_000
_BYTES_PER_VALUE = 4  # float32
_max_model_bytes = DEFAULT_MAX_MODEL_BYTES


def set_max_model_bytes(limit: int | None) -> None:
    """Raise (or lower) the cap for this process; None restores the default."""
    global _max_model_bytes
    _max_model_bytes = DEFAULT_MAX_MODEL_BYTES if limit is None else int(limit)


def max_model_bytes() -> int:
    """The cap in force."""
    return _max_model_bytes


def vit_cost(
    *,
    embed_dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float,
    img_size: int,
    patch_size: int,
    in_chans: int = 3,
    num_classes: int = 1000,
    prefix_tokens: int = 1,
) -> tuple[int, int]:
    """(parameters, activation bytes of one image's forward) of a ViT with these settings, from arithmetic only."""
    hidden = int(embed_dim * mlp_ratio)
    tokens = (img_size // patch_size) ** 2 + prefix_tokens
    per_block = 4 * embed_dim * embed_dim + 2 * embed_dim * hidden + 9 * embed_dim + hidden  # qkv, proj, mlp, norms
    parameters = (
        depth * per_block
        + in_chans * patch_size * patch_size * embed_dim  # patch projection
        + tokens * embed_dim  # position embedding (and tokens)
        + prefix_tokens * (num_classes + 1) * embed_dim  # one head per prefix token at most
    )
    # The widest tensors alive at once in a block: the MLP's hidden layer (or qkv) and one head's attention map.
    activations = _BYTES_PER_VALUE * (tokens * (max(hidden, 3 * embed_dim) + 2 * embed_dim) + num_heads * tokens**2)
    return parameters, activations


def check_model_cost(parameters: int, activation_bytes: int, *, where: str) -> None:
    """Refuse a model whose weights and one image's activations exceed the cap; `where` names the file."""
    total = parameters * _BYTES_PER_VALUE + activation_bytes
    if total > _max_model_bytes:
        raise DeitError(
            f"{where}: describes a model of {parameters:,} parameters needing about {total / 1e9:.1f} GB "
            f"(weights + one image's activations), over the {_max_model_bytes / 1e9:g} GB cap; refused before "
            f"building it (raise the cap with --max-model-gb if the file is trusted)"
        )
