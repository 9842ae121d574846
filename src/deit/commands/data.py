"""`deit data pack`: turn an ImageFolder data set into WebDataset tar shards for `--data-set WDS`."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of `deit data`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    pack = actions.add_parser("pack", help="ImageFolder (train/, val/) to tar shards + index.json")
    pack.add_argument("--data-path", required=True, help="folder holding train/<class>/* and val/<class>/*")
    pack.add_argument("--output", required=True, help="new (or empty) folder for the shards")
    pack.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")


def run(args: argparse.Namespace) -> int:
    """Run `deit data pack`; prints the counts per split."""
    from deit.data.pack import pack_folder

    index = pack_folder(args.data_path, args.output, shard_size=args.shard_size)
    for split, info in index["splits"].items():
        print(f"{split}: {info['count']} samples in {len(info['shards'])} shard(s)")
    print(f"wrote {args.output}/index.json ({len(index['classes'])} classes)")
    return 0
