"""What the issue-32 sweep scripts share: one training run from a configuration's fields, and a result line."""

import json
import time
from pathlib import Path


def train_fields(fields: dict, output_dir: Path | str) -> tuple[dict, float]:
    """(metrics, seconds) of `deit.engine.train` on `fields` (a TrainConfig as a dict), one thread, no step lines."""
    import torch

    from deit.engine import make_config, train

    torch.set_num_threads(1)  # two runs share the two cores: one thread each
    started = time.time()
    metrics = train(make_config(**{**fields, "output_dir": str(output_dir), "log_interval": 0}))
    return metrics, time.time() - started


def record(row: dict, log_path: Path) -> None:
    """Print `row` as a JSON line and append it to `log_path`."""
    line = json.dumps(row)
    print(line, flush=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(line + "\n")
