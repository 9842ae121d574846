"""An NVIDIA DALI input pipeline: JPEG decode, the paper's train transform and normalisation on the GPU.

Train, as `deit.data.transforms` with the same flags: decode + RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3,
bicubic; for inputs of 32 pixels or less the official CIFAR crop instead), horizontal flip, RandAugment (timm's
`rand-m9-mstd0.5-inc1` on DALI's `auto_aug` ops, without the magnitude noise) when `--aa` names a policy,
else colour jitter (`--color-jitter`, as timm), normalisation to CHW float, random erasing
(`--reprob/--remode/--recount`, timm's semantics). Eval: resize the short side to `input_size / crop_ratio`
(bicubic), centre crop, normalise. Mixup/cutmix stay on the batch as with the torch loader. The augmentations
are in `deit.data.dali_augment`.

The files come from a `SampleSource` (`.samples`: `(path, label)` pairs, `.classes`): a `FolderDataset`
(or `deit.data.dali_shards.ShardRecords`, whose samples are tar records), so bad files are probed, skipped and
reported by exactly the torch loader's code before DALI sees them, and a file that fails only when decoded is
replaced by the torch loader's own fallback (`DaliLoader`).
Training order: epoch `e` shuffles all files with `torch.randperm` seeded by `seed + e` (the permutation
`DistributedSampler` draws) and rank `r` of `n` reads every n-th file from position r, so an epoch sees every
image once across ranks and a resumed run replays the interrupted run's order (and augmentations) for each
epoch. Evaluation: rank `r` reads the r-th contiguous slice, in order.

`device_id=None` runs the whole pipeline on the CPU (DALI ≥ 2.4, RandAugment included with
`enable_conditionals=True`): that is how the tests run without a GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from deit.data.transforms import augment_policy_set
from deit.errors import DeitError

DALI_EXTRA_HINT = "pip install 'deit[dali]' (the nvidia-dali-cuda130 package)"
_SCALE = (0.08, 1.0)
_RATIO = (3 / 4, 4 / 3)


class SampleSource(Protocol):
    """What the pipeline reads: labelled file paths (already checked) and the class names."""

    samples: list[tuple[str, int]]
    classes: list[str]


def require_dali() -> Any:
    """The `nvidia.dali` module, or a one-line `DeitError` naming the extra."""
    try:
        import nvidia.dali as dali
    except ImportError as error:
        raise DeitError(f"--data-loader dali needs NVIDIA DALI: {DALI_EXTRA_HINT}") from error
    return dali


def check_dali_flags(
    *, auto_augment: str | None, three_augment: bool, simple_random_crop: bool, interpolation: str
) -> None:
    """A one-line `DeitError` naming the training-transform flag the DALI pipeline does not implement."""
    unsupported = [
        flag
        for flag, used in (
            ("--three-augment", three_augment),
            ("--src", simple_random_crop),
            (f"--train-interpolation {interpolation}", interpolation != "bicubic"),
        )
        if used
    ]
    if unsupported:
        raise DeitError(f"--data-loader dali does not implement {', '.join(unsupported)}; use --data-loader torch")
    if augment_policy_set(auto_augment):
        from deit.data.dali_augment import parse_rand_augment

        try:
            parse_rand_augment(str(auto_augment))
        except ValueError as error:
            raise DeitError(f"--data-loader dali with --aa {auto_augment}: {error}; use --data-loader torch") from error


@dataclass
class DaliSettings:
    """The transform's knobs (the paper's defaults; the flags of `deit.data.transforms.build_transform`)."""

    input_size: int = 224
    mean: Sequence[float] = (0.485, 0.456, 0.406)
    std: Sequence[float] = (0.229, 0.224, 0.225)
    hflip: float = 0.5
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"  # timm's RandAugment policies (inc1); None: off
    color_jitter: float | None = 0.3  # applied only without RandAugment, as timm
    reprob: float = 0.25
    remode: str = "pixel"
    recount: int = 1
    eval_crop_ratio: float = 0.875
    scale: Sequence[float] = (0.08, 1.0)  # RandomResizedCrop's area and aspect ranges (--scale, --ratio)
    ratio: Sequence[float] = (3 / 4, 4 / 3)


def build_pipeline(
    samples: Sequence[tuple[str, int]],
    settings: DaliSettings,
    *,
    train: bool,
    batch_size: int,
    device_id: int | None = None,
    num_threads: int = 2,
    seed: int = 0,
) -> Any:
    """A built DALI pipeline yielding `(images, labels)` of `samples` in order (the last batch padded by
    repetition); `seed` draws the augmentations; `device_id=None` keeps everything on the CPU."""
    dali = require_dali()
    from nvidia.dali import fn, types

    if not samples:
        raise DeitError("the DALI pipeline has no images to read")
    gpu = device_id is not None
    size = int(settings.input_size)
    rand_augment = augment_policy_set(settings.auto_augment)
    jitter = train and not rand_augment and bool(settings.color_jitter)

    @dali.pipeline_def(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id,
        seed=seed % 2**31,
        enable_conditionals=train and (rand_augment or jitter),
        exec_dynamic=True,
    )
    def pipeline() -> tuple[Any, Any]:
        encoded, label = _read(samples)
        decoder = "mixed" if gpu else "cpu"
        if train:
            images = _train_images(encoded, settings, decoder=decoder, jitter=jitter)
        else:
            images = fn.decoders.image(encoded, device=decoder, output_type=types.RGB)
            images = fn.resize(
                images,
                resize_shorter=int(size / settings.eval_crop_ratio),
                interp_type=types.INTERP_CUBIC,
                antialias=True,
            )
            images = _normalize(images, settings, crop=(size, size))
        return images, label.gpu() if gpu else label

    with warnings.catch_warnings(record=True) as caught:  # recorded: DALI forces its deprecation warnings on
        built = pipeline()
        built.build()
    for warning in caught:  # DALI's own auto_aug calls its deprecated fn.experimental aliases: not the user's
        if not issubclass(warning.category, DeprecationWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return built


def _read(samples: Sequence[tuple[Any, int]]) -> tuple[Any, Any]:
    """Encoded images and labels in order: DALI's file reader for paths, shard records by byte range."""
    from nvidia.dali import fn, types

    if isinstance(samples[0][0], str):
        return fn.readers.file(
            files=[path for path, _ in samples],
            labels=[int(label) for _, label in samples],
            random_shuffle=False,
            pad_last_batch=True,
            name="reader",
        )
    from deit.data.dali_shards import RecordReader

    return fn.external_source(
        source=RecordReader(list(samples)), num_outputs=2, batch=False, dtype=[types.UINT8, types.INT32]
    )


def _train_images(encoded: Any, settings: DaliSettings, *, decoder: str, jitter: bool) -> Any:
    from nvidia.dali import fn, types

    from deit.data.dali_augment import color_jitter, rand_augment, random_erasing, small_input_crop
    from deit.data.transforms import SMALL_INPUT

    size = int(settings.input_size)
    if size <= SMALL_INPUT:  # as our torch transform: the official CIFAR crop for tiny inputs
        images = small_input_crop(fn.decoders.image(encoded, device=decoder, output_type=types.RGB), size)
    else:
        images = fn.decoders.image_random_crop(
            encoded,
            device=decoder,
            output_type=types.RGB,
            random_area=[float(v) for v in settings.scale],
            random_aspect_ratio=[float(v) for v in settings.ratio],
            num_attempts=10,
        )
        images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC, antialias=True)
    if augment_policy_set(settings.auto_augment):
        images = rand_augment(images, str(settings.auto_augment), size=size)
    elif jitter:
        images = color_jitter(images, float(settings.color_jitter or 0.0))
    images = _normalize(images, settings, mirror=fn.random.coin_flip(probability=settings.hflip))
    if settings.reprob > 0:
        images = random_erasing(
            images, probability=settings.reprob, mode=settings.remode, max_count=int(settings.recount), size=size
        )
    return images


def _normalize(images: Any, settings: DaliSettings, **crop_and_mirror: Any) -> Any:
    """0–255 HWC -> normalised float CHW (the settings' mean and std are in 0–1 units, as ours)."""
    from nvidia.dali import fn, types

    return fn.crop_mirror_normalize(
        images,
        dtype=types.FLOAT,
        output_layout="CHW",
        mean=[255.0 * float(value) for value in settings.mean],
        std=[255.0 * float(value) for value in settings.std],
        **crop_and_mirror,
    )


def shard_indices(total: int, *, shard_id: int, num_shards: int, shuffle_seed: int | None) -> list[int]:
    """One rank's sample indices: every `num_shards`-th of the `shuffle_seed` permutation (training), or a
    contiguous slice in order (`shuffle_seed=None`, evaluation); the ranks together hold every index once."""
    if not 0 <= shard_id < num_shards:
        raise DeitError(f"shard {shard_id} of {num_shards}: the rank must be in [0, world size)")
    if shuffle_seed is None:
        return list(range(total * shard_id // num_shards, total * (shard_id + 1) // num_shards))
    generator = torch.Generator()
    generator.manual_seed(shuffle_seed)  # as DistributedSampler: the order depends on seed + epoch alone
    return torch.randperm(total, generator=generator).tolist()[shard_id::num_shards]


class DaliLoader:
    """Iterates one rank's shard as `(images (B,3,H,W) float, labels (B,) int64)` torch batches, epoch by epoch.

    Training builds the pipeline of the epoch given to `set_epoch` (as the torch loader's sampler: the order and
    augmentations follow from seed + epoch, so a resumed run continues as the uninterrupted one). The last batch
    of an epoch is trimmed to the shard's own images (DALI pads it by repetition), so the ranks together see
    every image exactly once per epoch. A file that passed the folder scan but fails to decode (a damaged JPEG
    payload) stops DALI's pipeline: the loader then finds it with the source's `first_decodable` (the torch
    loader's own fallback: logged, reported, replaced by the next decodable image) and rebuilds the pipeline
    from the batch that failed.
    """

    def __init__(
        self,
        source: SampleSource,
        settings: DaliSettings,
        *,
        train: bool,
        batch_size: int,
        shard_id: int = 0,
        num_shards: int = 1,
        device_id: int | None = None,
        num_threads: int = 2,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        self.source, self.settings, self.train, self.batch_size = source, settings, train, batch_size
        self.drop_last = drop_last  # training: full batches only (mixup pairs samples), as the torch loader
        self.shard_id, self.num_shards, self.seed = shard_id, num_shards, seed
        self._options = dict(device_id=device_id, num_threads=num_threads)
        self.epoch = 0
        self._replacements: dict[int, int] = {}  # undecodable sample -> the decodable one read instead
        self.shard_size = len(self._epoch_indices())  # the same count every epoch
        self.pipeline = self._pipeline(self._epoch_indices())  # built now: configuration errors surface early
        self._built_epoch: int | None = 0
        self.classes = source.classes

    def __len__(self) -> int:
        if self.drop_last:  # the smallest rank's full batches, so every rank takes the same number of steps (DDP)
            return len(self.source.samples) // self.num_shards // self.batch_size
        return -(-self.shard_size // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The engine's sampler hook: the next pass reads epoch `epoch`'s order (seed + epoch)."""
        self.epoch = int(epoch)

    def _epoch_indices(self) -> list[int]:
        indices = shard_indices(
            len(self.source.samples),
            shard_id=self.shard_id,
            num_shards=self.num_shards,
            shuffle_seed=self.seed + self.epoch if self.train else None,
        )
        return [self._replacements.get(index, index) for index in indices]

    def _pipeline(self, indices: list[int], restart: int = 0) -> Any:
        # a distinct augmentation seed per (rank, epoch, restart), so a resumed epoch replays its augmentations
        seed = self.seed + self.shard_id + self.num_shards * (self.epoch + 100_003 * restart)
        return build_pipeline(
            [self.source.samples[index] for index in indices],
            self.settings,
            train=self.train,
            batch_size=self.batch_size,
            seed=seed,
            **self._options,
        )  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._epoch_indices()
        if self._built_epoch is None or (self.train and self._built_epoch != self.epoch):
            self.pipeline = self._pipeline(indices)
        self._built_epoch = self.epoch
        position, restarts = 0, 0
        stop = min(self.shard_size, len(self) * self.batch_size)
        while position < stop:
            try:
                images, labels = self.pipeline.run()
            except RuntimeError as error:  # DALI's decoders stop the pipeline on a damaged file
                restarts += 1
                indices[position:] = self._replace_undecodable(indices[position:], error)
                self.pipeline = self._pipeline(indices[position:], restart=restarts)
                continue
            take = min(stop - position, self.batch_size)  # DALI pads the last batch: keep the shard's own images
            yield (_to_torch(images)[:take], _to_torch(labels).reshape(-1)[:take].long())
            position += take
        self.pipeline.reset()
        if restarts or not isinstance(self.source.samples[0][0], str):  # records: no epoch end to reset to
            self._built_epoch = None  # the pipeline now starts mid-way: rebuild it for the next pass

    def _replace_undecodable(self, upcoming: list[int], error: RuntimeError) -> list[int]:
        """`upcoming` with each file that fails to decode (among the batches DALI may have been working on)
        replaced by the source's next decodable one; a one-line DeitError when none fails with Pillow."""
        first_decodable = getattr(self.source, "first_decodable", None)
        window = upcoming[: 3 * self.batch_size]  # the failed batch and the ones DALI prefetches (depth 2)
        replaced = list(upcoming)
        if first_decodable is not None:
            for offset, index in enumerate(window):
                replaced[offset] = first_decodable(index)[0]
                if replaced[offset] != index:
                    self._replacements[index] = replaced[offset]
        if replaced == upcoming:
            first_line = next((line for line in str(error).splitlines() if line.strip()), "")
            raise DeitError(
                f"the DALI pipeline failed and no file of its batch fails to decode with Pillow: {first_line}"
            ) from error
        return replaced


def _to_torch(batch: Any) -> torch.Tensor:
    """A dense DALI TensorList as a torch tensor (copied; CPU or the pipeline's GPU)."""
    dense = batch.as_tensor()
    if hasattr(dense, "as_cpu") and type(dense).__name__.endswith("GPU"):
        from nvidia.dali.plugin.pytorch import feed_ndarray

        out = torch.empty(
            dense.shape(), dtype=torch.float32 if "float" in str(dense.dtype).lower() else torch.int32, device="cuda"
        )
        feed_ndarray(dense, out)
        return out
    return torch.from_numpy(__import__("numpy").array(dense))


__all__ = [
    "DALI_EXTRA_HINT",
    "DaliLoader",
    "DaliSettings",
    "SampleSource",
    "build_pipeline",
    "check_dali_flags",
    "require_dali",
    "shard_indices",
]
