"""The data path: data sets (with bad-file handling), the paper's transforms, repeated augmentation, mixup."""

from deit.data.datasets import DATASET_NAMES, build_dataset
from deit.data.digits import DIGITS_MEAN, DIGITS_STD
from deit.data.images import read_image
from deit.data.mixup import build_mixup
from deit.data.sampler import RepeatAugSampler
from deit.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform

__all__ = [
    "DATASET_NAMES",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RepeatAugSampler",
    "build_dataset",
    "build_mixup",
    "build_transform",
    "read_image",
]
