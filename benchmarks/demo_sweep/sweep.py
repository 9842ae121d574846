"""The recipe sweep behind `deit demo` (docs/demo.md): named engine runs, 2 single-thread processes, JSONL out.

Run from the repository root: `PYTHONPATH=src python benchmarks/demo_sweep/sweep.py benchmarks/demo_sweep/stage1.py`.
A stage file is Python run here with `run`, `teacher`, `student`, `ROOT`, `MIX` in scope; results go to
runs/demo_sweep/ (one folder per run) and runs/demo_sweep/sweep.jsonl (one line per run).
"""

import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path("runs/demo_sweep")
LOG = str(ROOT / "sweep.jsonl")
STUDENT = {"embed_dim": 128, "depth": 2, "num_heads": 4, "patch_size": 8}
TEACHER_KW = {"channels": [16, 32, 64, 128], "stem_width": 16}
MIX = dict(mixup=0.8, cutmix=1.0)


def base(**kw):
    from deit.demo.experiment import DemoSettings, shared_recipe

    r = shared_recipe(DemoSettings())
    r.update(kw)
    return r


def one(name, settings):
    import torch

    torch.set_num_threads(1)
    from deit.engine import make_config, train

    out = ROOT / name
    settings = dict(settings, output_dir=str(out))
    t = time.perf_counter()
    m = train(make_config(**settings))
    return {
        "name": name,
        "acc1": m["acc1"],
        "cls": m["cls_acc1"],
        "dist": m.get("dist_acc1"),
        "seconds": round(time.perf_counter() - t, 1),
        "settings": {
            k: v
            for k, v in settings.items()
            if k
            in (
                "model",
                "epochs",
                "train_subset",
                "seed",
                "distillation_type",
                "distillation_alpha",
                "distillation_tau",
                "distillation_kl_reduction",
                "mixup",
                "cutmix",
                "batch_size",
            )
        },
    }


def run(specs, log=LOG):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        futures = [pool.submit(one, n, s) for n, s in specs]
        for f in futures:
            r = f.result()
            print(json.dumps(r), flush=True)
            with open(log, "a") as fh:
                fh.write(json.dumps(r) + "\n")


def teacher(frac, epochs, tag="", **kw):
    return (
        f"teacher{tag}_f{frac}_e{epochs}",
        base(model="resnet18", model_kwargs=TEACHER_KW, epochs=epochs, batch_size=32, seed=0, train_subset=frac, **kw),
    )


def student(kind, frac, epochs, seed, tpath=None, tag="", student_kw=STUDENT, **kw):
    from deit.demo.experiment import DISTILLED_STUDENT, PLAIN_STUDENT

    d = {"two_cls_tokens": "labels"}.get(kind, kind)
    extra = dict(teacher_model="resnet18", teacher_path=tpath) if d in ("soft", "hard") else {}
    s = base(
        model=PLAIN_STUDENT if kind == "none" else DISTILLED_STUDENT,
        model_kwargs=student_kw,
        epochs=epochs,
        batch_size=16,
        seed=seed,
        train_subset=frac,
        distillation_type=d,
        **extra,
        **kw,
    )
    return (f"{kind}{tag}_f{frac}_e{epochs}_s{seed}", s)


if __name__ == "__main__":
    ROOT.mkdir(parents=True, exist_ok=True)
    exec(open(sys.argv[1]).read())
