"""The run: validate, build, resume, loop over epochs, checkpoint, log, plot (`deit train`, `deit.train`)."""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deit.distill.loss import TEACHER_TYPES
from deit.engine import builders
from deit.engine.checkpoint_structure import check_state_shapes, has_training_state
from deit.engine.checkpointing import (
    BEST_NAME,
    CHECKPOINT_NAME,
    capture_rng,
    check_resume_matches,
    copy_checkpoint,
    prune_log,
    read_checkpoint,
    remove_stale_temporaries,
    resolve_resume_path,
    restore_rng,
    restore_training_state,
    resume_changes,
    save_checkpoint,
    training_state,
)
from deit.engine.config import TrainConfig, save_config_yaml
from deit.engine.distributed import (
    DistributedEnv,
    any_process,
    init_distributed,
    process_device,
    read_launcher_env,
    shutdown_distributed,
)
from deit.engine.finetune import FinetuneOrigin
from deit.engine.logging_utils import RunLog, plot_curves, resolve_log_format, say
from deit.engine.loop import NonFiniteLossError, evaluate, train_one_epoch
from deit.engine.optim import build_scheduler, current_lr
from deit.engine.preflight import describe_data, resolve_data_set, validate_config
from deit.engine.recipes import describe_recipe, small_run_warnings
from deit.engine.run_lock import lock_run_folder, refuse_replacing_a_best, refuse_replacing_a_run
from deit.engine.run_report import (
    choose_threads,
    clamp_workers,
    closing_summary,
    effective_log_interval,
    epoch_steps,
    teacher_note,
)
from deit.engine.step import TrainStep
from deit.engine.wide_head import head_width, keeps_wide_head, padded_names, wide_head_note
from deit.errors import DeitError
from deit.integrity import check_finite_metrics
from deit.models.checkpoint import load_state_dict_strict
from deit.models.meta import CheckpointMeta
from deit.precision import Precision, resolve_precision


@dataclass
class _Run:
    """Everything one run builds; `train` fills it in, the epoch loop uses it."""

    config: TrainConfig
    env: DistributedEnv
    device: torch.device
    precision: Precision
    output_dir: Path | None
    model: nn.Module = None  # type: ignore[assignment]
    train_model: nn.Module = None  # type: ignore[assignment]  # DDP / compiled wrapper of `model`
    teacher: nn.Module | None = None
    model_ema: Any = None
    optimizer: Any = None
    scheduler: Any = None
    step: TrainStep = None  # type: ignore[assignment]  # the one training step (engine/step.py)
    loaders: Any = None
    meta: CheckpointMeta | None = None
    start_epoch: int = 0
    best_acc: float = -1.0
    global_step: int = 0
    last_saved_epoch: int | None = None
    origin: FinetuneOrigin | None = None  # what --finetune loaded and adapted


def train(config: TrainConfig) -> dict[str, Any]:
    """Run `config` (train, or evaluate with `config.eval`) and return the final evaluation metrics."""
    config = resolve_data_set(config)
    validate_config(config)
    env = read_launcher_env()
    say(describe_data(config), is_main=env.is_main)
    config, clamped = clamp_workers(config)
    if clamped:
        say(clamped, is_main=env.is_main)
    recipe = describe_recipe(config)
    if recipe:
        say(recipe, is_main=env.is_main)
    if not config.eval and env.is_main:
        for problem in small_run_warnings(config, world_size=env.world_size):
            warnings.warn(problem, stacklevel=2)
    if config.world_size > 1 and not env.distributed:
        raise DeitError(
            f"--world_size {config.world_size}: start the processes with torchrun or srun "
            f"(the launcher sets the world size)"
        )
    device = process_device(config.device, env.local_rank)
    precision = resolve_precision(config.amp, device)
    resume_path = resolve_resume_path(config.resume, config.output_dir)
    if config.output_dir and not config.eval:  # before anything is read or said ("starting from scratch")
        refuse_replacing_a_best(
            config.output_dir,
            BEST_NAME,
            CHECKPOINT_NAME,
            resuming=resume_path is not None,
            overwrite=config.overwrite_output,
        )
    checkpoint = None
    if resume_path is not None:
        checkpoint = read_checkpoint(resume_path)
        check_resume_matches(
            checkpoint, resume_path, model=config.model, model_kwargs=config.model_kwargs, input_size=config.input_size
        )
        changes = resume_changes(checkpoint, resume_path, config.to_dict()) if not config.eval else ""
        if changes and env.is_main:
            warnings.warn(changes, stacklevel=2)
    elif config.resume == "auto":
        say(
            f"--resume auto: no {CHECKPOINT_NAME} in {config.output_dir} yet; starting from scratch",
            is_main=env.is_main,
        )
    folder_lock = None
    if config.output_dir:
        if not config.eval:
            refuse_replacing_a_run(
                config.output_dir, CHECKPOINT_NAME, resuming=checkpoint is not None, overwrite=config.overwrite_output
            )
        if env.is_main:  # only rank 0 writes, so only rank 0 locks
            folder_lock = lock_run_folder(config.output_dir)
    owns_group = not torch.distributed.is_initialized()
    threads_before = torch.get_num_threads()
    try:
        init_distributed(env, device, dist_url=config.dist_url, require=config.distributed)
        run = _build(config, env, device, precision, resume_path, checkpoint)
        if config.eval:  # the head was trained as the file records, whatever this command line says
            args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
            return _evaluate_only(run, trained_with=args.get("distillation_type") if isinstance(args, dict) else None)
        if output_dir_is_main(run):
            # only once the run is known to start; the fine-tune origin as comments (a reload ignores them)
            save_config_yaml(
                config,
                run.output_dir / "config.yaml",
                comments=run.origin.lines(config.model) if run.origin is not None else (),
            )
        return _train_epochs(run, resumed=run.last_saved_epoch is not None)
    finally:
        torch.set_num_threads(threads_before)  # the caller's process goes on with its own setting
        if folder_lock is not None:
            folder_lock.release()
        if owns_group:
            shutdown_distributed()


def output_dir_is_main(run: _Run) -> bool:
    """Whether this process writes the run folder (rank 0 with an --output_dir)."""
    return run.output_dir is not None and run.env.is_main


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _build(
    config: TrainConfig,
    env: DistributedEnv,
    device: torch.device,
    precision: Precision,
    resume_path: Path | None,
    checkpoint: dict[str, Any] | None,
) -> _Run:
    output_dir = Path(config.output_dir) if config.output_dir else None
    run = _Run(config, env, device, precision, output_dir)
    if output_dir is not None and env.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(output_dir)  # the folder lock is held: these are dead runs' temporaries
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")

    report_dir = str(output_dir) if output_dir is not None and env.is_main else None
    train_set, val_set = builders.build_datasets(config, report_dir=report_dir, need_train=not config.eval)
    # Seeded after the data sets: their lazy imports (scikit-learn's) draw from the global RNGs.
    _seed_everything(config.seed + env.rank)
    class_names = [str(name) for name in (train_set or val_set).classes]
    num_classes = data_classes = len(class_names)
    width = head_width(checkpoint.get("model")) if checkpoint is not None else None
    if keeps_wide_head(width, num_classes, config.data_set):  # an official IMNET head on a smaller folder
        say(wide_head_note(f"--resume {resume_path}", width, num_classes), is_main=env.is_main)  # type: ignore[arg-type]
        class_names, num_classes = padded_names(class_names, width), width  # type: ignore[arg-type]
    if config.distillation_type in TEACHER_TYPES and config.teacher_path and not config.teacher_labels:
        # On a forked RNG: building the teacher draws its throw-away initial weights, and the student's must
        # depend on --seed alone (the demo pairs a distilled student with a plain one of the same seed).
        with torch.random.fork_rng(devices=[]):
            run.teacher = builders.build_teacher_for(config, num_classes, device)

    model, origin = builders.build_student_with_origin(
        config, num_classes, load_finetune=checkpoint is None, class_names=class_names
    )
    for line in origin.lines(config.model) if origin is not None else []:
        say(line, is_main=env.is_main)
    if not config.eval:
        _announce_objective(config, model, is_main=env.is_main)
    if checkpoint is not None:
        load_state_dict_strict(model, checkpoint["model"], source=str(resume_path))
    run.model = model.to(device)
    run.meta, run.origin = builders.checkpoint_meta(config, model, class_names, origin=origin), origin
    run.step = builders.build_train_step(
        config,
        model,
        run.teacher,
        num_classes=num_classes,
        device=device,
        precision=precision,
        world_size=env.world_size,
        distributed=env.distributed,
    )
    run.optimizer, run.model_ema, run.train_model = run.step.optimizer, run.step.model_ema, run.step.model
    lr = current_lr(run.optimizer)  # as build_train_step scaled it; read before the warm-up lowers it
    run.loaders = builders.build_loaders(
        config, train_set, val_set, env, device, teacher=run.teacher if not config.eval else None
    )
    run.scheduler = build_scheduler(
        run.optimizer,
        sched=config.sched,
        epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        decay_epochs=config.decay_epochs,
        decay_rate=config.decay_rate,
        cooldown_epochs=config.cooldown_epochs,
        patience_epochs=config.patience_epochs,
        lr_noise=config.lr_noise,
        lr_noise_pct=config.lr_noise_pct,
        lr_noise_std=config.lr_noise_std,
        seed=config.seed,
        updates_per_epoch=_updates_per_epoch(run.loaders.train, config) if config.sched_on_updates else 0,
    )
    from deit.data.memory import MemoryLoader

    in_memory = isinstance(run.loaders.train, MemoryLoader)  # no workers: the batches are made in this process
    # A seeded stream (engine/stream.py) and a DataLoader say how many loader workers they run.
    workers = getattr(run.loaders.train, "num_workers", 0 if in_memory else config.num_workers)
    threads, line = choose_threads(config.threads, workers)
    torch.set_num_threads(threads)
    say(line, is_main=env.is_main)
    run.start_epoch = config.start_epoch
    if checkpoint is not None and not config.eval and not has_training_state(checkpoint):
        # As the official main.py: a weights-only file (a released model) resumes at --start_epoch, fresh state.
        say(
            f"--resume {resume_path}: weights only (no optimizer, schedule or epoch); training starts at epoch "
            f"{run.start_epoch + 1} from these weights",
            is_main=env.is_main,
        )
    elif checkpoint is not None and not config.eval:
        run.start_epoch, run.best_acc, run.global_step = restore_training_state(
            checkpoint,
            resume_path,
            optimizer=run.optimizer,
            scheduler=run.scheduler,  # type: ignore[arg-type]
            scaler=precision.scaler,
            model_ema=run.model_ema,
        )
        check_state_shapes(run.optimizer, model, resume_path)  # type: ignore[arg-type]
        run.scheduler.step(run.start_epoch)
        if config.sched_on_updates:
            run.scheduler.step_update(run.global_step // config.grad_accum_steps)
        run.last_saved_epoch = run.start_epoch - 1
        say(
            f"resumed from epoch {run.start_epoch} of {config.epochs} ({resume_path}); continuing at epoch "
            f"{run.start_epoch + 1}",
            is_main=env.is_main,
        )
        _restore_rng_for_rank(checkpoint.get("rng"), env, config.seed, run.start_epoch)
    n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    sizes = f"{len(train_set)} train / " if train_set is not None else ""
    if getattr(train_set, "description", None):
        sizes = f"{len(train_set)} train ({train_set.description}) / "  # type: ignore[union-attr]
    say(
        f"{config.model}: {n_parameters:,} trainable parameters; {config.data_set}: {sizes}{len(val_set)} val images, "
        f"{data_classes} classes; {device}, {precision.name}, {env.world_size} process(es); lr {lr:.3g}",
        is_main=env.is_main,
    )
    return run


def _announce_objective(config: TrainConfig, model: nn.Module, *, is_main: bool) -> None:
    """Say at start what each head learns from when that is not the model's obvious use; refuse the impossible."""
    distilled = bool(getattr(model, "distilled", False))
    kind = config.distillation_type
    if config.cosub and distilled:  # the official engine cannot split a (cls, dist) pair either
        raise DeitError(
            f"--cosub trains a model with one head (as the official code); {config.model} also has a "
            f"distillation head: use a model without a distillation token"
        )
    if kind == "labels" and not distilled:
        raise DeitError(
            f"--distillation-type labels: {config.model} has no distillation token to train on the "
            f"labels; use a *_distilled_* model"
        )
    if kind == "none" and distilled:
        warnings.warn(
            f"--distillation-type none: the distillation head of {config.model} receives no training "
            f"signal (the loss is the class head's, as in the official code); use soft/hard with a "
            f"teacher, or 'labels' for the two-class-token control",
            stacklevel=3,
        )
    elif kind in TEACHER_TYPES and not distilled:
        say(
            f"--distillation-type {kind}: {config.model} has no distillation token, so the teacher's term "
            f"trains its class token (classic distillation, the paper's Table 3 'class token only' row)",
            is_main=is_main,
        )


def _restore_rng_for_rank(rng: dict[str, Any] | None, env: DistributedEnv, seed: int, epoch: int) -> None:
    if not rng:
        warnings.warn(
            "the checkpoint has no RNG state: the resumed run will not repeat an uninterrupted one exactly",
            stacklevel=3,
        )
        return
    ranks = rng.get("ranks")
    if ranks and len(ranks) == env.world_size:
        restore_rng(ranks[env.rank])
    elif env.rank == 0:
        restore_rng(rng)
    else:  # a different number of processes than the checkpoint's: fresh but distinct streams
        _seed_everything((seed + env.rank) * 1009 + epoch)


def _gather_rng(env: DistributedEnv) -> dict[str, Any]:
    state = capture_rng()
    if not env.distributed:
        return state
    gathered: list[Any] = [None] * env.world_size
    torch.distributed.all_gather_object(gathered, state)
    return {**gathered[0], "ranks": gathered}


def _evaluate_only(run: _Run, *, trained_with: str | None) -> dict[str, Any]:
    metrics = evaluate(
        run.train_model,
        run.loaders.val,
        run.device,
        teacher=run.teacher,
        precision=run.precision,
        distributed=run.loaders.distributed_eval,
    )
    untrained = _dist_head_untrained(trained_with, metrics)
    say(
        f"Accuracy of the network on the {metrics['num_images']} test images: {metrics['acc1']:.1f}%"
        + (" (fused with the untrained distillation head; see the class head below)" if untrained else ""),
        is_main=run.env.is_main,
    )
    say(format_metrics(metrics, untrained_dist_head=untrained), is_main=run.env.is_main)
    check_finite_metrics(metrics, source="--eval")
    return metrics


def format_metrics(metrics: dict[str, Any], *, untrained_dist_head: bool = False) -> str:
    """One line: fused, class-head and dist-head top-1/top-5, and teacher agreement when present.

    `untrained_dist_head` (a distilled model trained with `--distillation-type none`): the class head's number
    leads, and the fused one says that it averages in a head that never learned.
    """
    parts = [
        f"fused top-1 {metrics['acc1']:.2f} top-5 {metrics['acc5']:.2f}",
        f"class head {metrics['cls_acc1']:.2f}/{metrics['cls_acc5']:.2f}",
    ]
    if "dist_acc1" not in metrics:  # one head: "fused" and "class head" would be the same number twice
        parts = [f"top-1 {metrics['acc1']:.2f} top-5 {metrics['acc5']:.2f}"]
    elif untrained_dist_head:
        parts = [
            f"class head top-1 {metrics['cls_acc1']:.2f} top-5 {metrics['cls_acc5']:.2f}",
            f"fused {metrics['acc1']:.2f}/{metrics['acc5']:.2f} (averages in the distillation head, "
            f"untrained under --distillation-type none)",
            f"dist head (untrained) {metrics['dist_acc1']:.2f}/{metrics['dist_acc5']:.2f}",
        ]
    elif "dist_acc1" in metrics:
        parts.append(f"dist head {metrics['dist_acc1']:.2f}/{metrics['dist_acc5']:.2f}")
    if "teacher_agreement" in metrics:
        parts.append(f"teacher top-1 {metrics['teacher_acc1']:.2f}, agreement {metrics['teacher_agreement']:.2f}")
    return " | ".join(parts) + f" | loss {metrics['loss']:.4f}"


def _epoch_validation(run: _Run, metrics: dict[str, Any]) -> str:
    untrained = _dist_head_untrained(run.config.distillation_type, metrics)
    # The best epoch is chosen by the fused top-1, as official: said so when that averages an untrained head.
    best = f"best{' fused' if untrained else ''} {run.best_acc:.2f}"
    return f"{format_metrics(metrics, untrained_dist_head=untrained)} | {best}"


def _dist_head_untrained(distillation_type: str | None, metrics: dict[str, Any]) -> bool:
    # A distilled model trained with --distillation-type none: its distillation head never learned.
    return distillation_type == "none" and "dist_acc1" in metrics


def _updates_per_epoch(loader: Any, config: TrainConfig) -> int:
    """Optimizer updates per epoch, for a schedule stepped per update (--sched-on-updates)."""
    batches = epoch_steps(loader, config.max_steps_per_epoch)
    if not batches:
        raise DeitError("--sched-on-updates needs a training loader whose length is known")
    return max(1, batches // config.grad_accum_steps)


def _per_update_schedule(run: _Run) -> Callable[[int], None]:
    """After each batch: the lr of the next optimizer update (batches counted over the whole run)."""
    accum = run.config.grad_accum_steps
    return lambda batches_done: run.scheduler.step_update(batches_done // accum)


def _train_epochs(run: _Run, *, resumed: bool) -> dict[str, Any]:
    config, env = run.config, run.env
    if run.output_dir is not None and env.is_main:  # rows of epochs no checkpoint holds: a killed run's
        prune_log(run.output_dir / "log.txt", run.start_epoch - 1)
    log = RunLog(run.output_dir, enabled=env.is_main, purge_step=run.start_epoch if resumed else None)
    mode = resolve_log_format(config.log_format, is_main=env.is_main)
    metrics: dict[str, Any] = {}
    train_stats: dict[str, Any] = {}
    epoch = run.start_epoch
    teacher_cache: dict[int, torch.Tensor] = {}  # the frozen teacher's validation decisions, computed once
    steps_per_epoch = epoch_steps(run.loaders.train, config.max_steps_per_epoch)
    log_interval = effective_log_interval(config.log_interval, steps_per_epoch)
    run_started = time.time()
    try:
        if run.start_epoch >= config.epochs:
            say(f"the checkpoint already completed all {config.epochs} epochs; evaluating it", is_main=env.is_main)
            return _evaluate_only(run, trained_with=config.distillation_type)
        for epoch in range(run.start_epoch, config.epochs):
            started = time.time()
            run.loaders.train_sampler.set_epoch(epoch)
            train_stats = train_one_epoch(
                run.step,
                run.loaders.train,
                run.device,
                epoch,
                set_training_mode=config.train_mode,
                nan_policy=config.nan_policy,
                max_steps=config.max_steps_per_epoch,
                log_interval=log_interval,
                progress_mode=mode,
                global_step=run.global_step,
                steps_after=steps_per_epoch * (config.epochs - epoch - 1),
                on_report=log.write_step,
                on_update=_per_update_schedule(run) if config.sched_on_updates else None,
            )
            run.global_step = int(train_stats["global_step"])
            evaluated = (epoch + 1) % config.eval_interval == 0 or epoch + 1 == config.epochs
            improved = False
            if evaluated:
                metrics = evaluate(
                    run.train_model,
                    run.loaders.val,
                    run.device,
                    teacher=run.teacher,
                    precision=run.precision,
                    distributed=run.loaders.distributed_eval,
                    teacher_cache=teacher_cache,
                )
                improved = metrics["acc1"] > run.best_acc
                run.best_acc = max(run.best_acc, metrics["acc1"])
            run.scheduler.step(epoch + 1, metrics["acc1"] if evaluated else None)  # None only without plateau
            stats = {
                **{f"train_{k}": v for k, v in train_stats.items() if k != "global_step"},
                **({f"test_{k}": v for k, v in metrics.items()} if evaluated else {}),
                "epoch": epoch,
                "n_parameters": sum(p.numel() for p in run.model.parameters() if p.requires_grad),
                "epoch_time": time.time() - started,
            }
            # The row before the checkpoint: a kill between the two leaves a row the next start prunes, never a
            # checkpointed epoch without its row (which no resume would write again).
            log.write(stats)
            if _checkpoint_due(config, epoch, improved):
                try:
                    _save_epoch(run, epoch, improved)
                except DeitError:
                    if run.last_saved_epoch != epoch:  # no checkpoint holds this epoch: neither may log.txt
                        log.drop_last_row()
                    raise
            skipped = f", {train_stats['skipped_steps']} bad batches skipped" if train_stats["skipped_steps"] else ""
            validation = _epoch_validation(run, metrics) if evaluated else "not evaluated"
            say(
                f"epoch {epoch + 1}/{config.epochs}: train loss {train_stats['loss']:.4f}{skipped} | {validation} | "
                f"{time.time() - started:.1f}s",
                is_main=env.is_main,
            )
    except KeyboardInterrupt:
        say(f"interrupted in epoch {epoch + 1}; {_kept(run)}; continue with --resume auto", is_main=env.is_main)
        raise
    except NonFiniteLossError as error:
        raise NonFiniteLossError(
            f"{error}; stopped ({_kept(run)}); try a lower --lr, --clip-grad, --amp none, or --nan-policy skip",
            epoch=error.epoch,
            step=error.step,
        ) from error
    finally:
        log.close()
        if run.output_dir is not None and env.is_main:
            with contextlib.suppress(Exception):  # a plot must never hide the run's real outcome
                classes = run.meta.num_classes if run.meta is not None else None
                plot_curves(run.output_dir / "log.txt", run.output_dir / "curves.png", num_classes=classes)
    say(
        closing_summary(
            run.best_acc,
            metrics,
            run.output_dir,
            epochs_run=epoch + 1 - run.start_epoch,
            seconds=time.time() - run_started,
            resumed_after=run.start_epoch if resumed else 0,
            total_epochs=config.epochs,
        ),
        is_main=env.is_main,
    )
    note = teacher_note(metrics)
    if note:
        say(note, is_main=env.is_main)
    return {
        **metrics,
        "epoch": epoch,
        "best_acc1": run.best_acc,
        "train_loss": train_stats.get("loss"),
        "train_skipped_steps": train_stats.get("skipped_steps", 0),
    }


def _kept(run: _Run) -> str:
    if run.output_dir is None:
        return "nothing is saved without --output_dir"
    if run.last_saved_epoch is None:
        return f"no epoch completed, no {CHECKPOINT_NAME} written"
    return f"{run.output_dir / CHECKPOINT_NAME} holds the last completed epoch ({run.last_saved_epoch + 1})"


def _checkpoint_due(config: TrainConfig, epoch: int, improved: bool) -> bool:
    """--checkpoint-every: every N-th epoch, the last, an improvement (best_checkpoint.pth copies it) and the
    epochs --keep-every keeps."""
    done = epoch + 1
    kept = bool(config.keep_every) and done % config.keep_every == 0
    return done % config.checkpoint_every == 0 or done == config.epochs or improved or kept


def _save_epoch(run: _Run, epoch: int, improved: bool) -> None:
    """checkpoint.pth every epoch, best_checkpoint.pth on improvement; every rank learns if rank 0 failed."""
    rng = _gather_rng(run.env)  # collective: every rank takes part, even without an output directory
    if run.output_dir is None:
        return
    failure: DeitError | None = None
    if run.env.is_main:
        state = training_state(
            model=run.model,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            scaler=run.precision.scaler,
            model_ema=run.model_ema,
            epoch=epoch,
            args=run.config.to_dict(),
            meta=run.meta,
            rng=rng,
            best_acc=run.best_acc,
            global_step=run.global_step,
        )
        latest = run.output_dir / CHECKPOINT_NAME
        try:
            try:
                save_checkpoint(state, latest, previous_epoch=_one_based(run.last_saved_epoch))
            except KeyboardInterrupt:
                save_checkpoint(state, latest, previous_epoch=_one_based(run.last_saved_epoch))  # finish, then stop
                run.last_saved_epoch = epoch
                raise
            run.last_saved_epoch = epoch
            if improved:
                copy_checkpoint(latest, run.output_dir / BEST_NAME)
            if run.config.keep_every and (epoch + 1) % run.config.keep_every == 0:
                copy_checkpoint(latest, run.output_dir / f"checkpoint_epoch{epoch + 1}.pth")
        except DeitError as error:
            failure = error
    if any_process(failure is not None, run.device):
        raise failure or DeitError("rank 0 could not write the checkpoint; stopping every process")
    run.last_saved_epoch = epoch


def _one_based(epoch: int | None) -> int | None:
    return None if epoch is None else epoch + 1
