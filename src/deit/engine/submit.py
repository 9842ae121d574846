"""`deit submit`: a training run as a SLURM job through submitit, as the official `run_with_submitit.py` launches it.

One job of `nodes` nodes, one task per GPU (`ngpus` per node), each task one `deit train` process of the same
process group. On preemption or timeout SLURM signals the job ahead of time (`--signal USR2@120`); submitit then
asks `SubmititTrainer.checkpoint` for the job to requeue: the same training, `--resume auto` in the same folder,
so it continues from the last completed epoch's `checkpoint.pth` (every epoch writes one).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deit.engine.checkpointing import CHECKPOINT_NAME
from deit.engine.config import TrainConfig
from deit.errors import DeitError

CLUSTERS = ("auto", "slurm", "local")


@dataclass(frozen=True)
class SubmitOptions:
    """The official `run_with_submitit.py` flags (same names and meaning), and which executor runs the job."""

    ngpus: int = 8  # GPUs, hence tasks, per node
    nodes: int = 2
    timeout: int = 2800  # minutes
    job_dir: str = ""  # the job's folder; `%j` becomes the job id
    partition: str = ""  # empty: the cluster's default partition (official: "learnfair", FAIR's own)
    use_volta32: bool = False  # ask for 32 GB V100s (`--constraint volta32gb`)
    comment: str = ""
    cluster: str = "auto"  # auto: SLURM where `srun` exists; local: tasks on this machine (tests, a workstation)


def default_job_dir() -> str:
    """Where jobs go without `--job_dir`: one folder per job id under ./runs/submit (official: /checkpoint/$USER)."""
    return str(Path("runs") / "submit" / "%j")


class SubmititTrainer:
    """The callable each task of the job runs: join the job's process group and train; requeued on a signal."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def __call__(self) -> dict[str, Any] | None:
        """Train `config` as this task of the job (rank, world size and master from submitit's environment)."""
        from deit.engine.run import train

        export_process_group_env()
        signalled = _note_requeue_signal()
        try:
            return train(self._for_this_job())
        except Exception:
            if int(os.environ["RANK"]) == 0 or not signalled():
                raise
            # Task 0 left to checkpoint and requeue the job, so this task's next collective failed: that is the
            # requeue, not an error (no traceback); the requeued job starts every task again.
            print(f"deit submit: task {os.environ['RANK']} stops; task 0 requeues the job", flush=True)
            return None

    def checkpoint(self) -> Any:
        """What submitit requeues after a preemption or timeout: the same run, continuing its last checkpoint."""
        import submitit

        config = self._for_this_job()
        if (Path(config.output_dir) / CHECKPOINT_NAME).is_file():
            config = dataclasses.replace(config, resume="auto")
        print(f"deit submit: requeued; the next start resumes from {config.resume or 'scratch'}", flush=True)
        return submitit.helpers.DelayedSubmission(type(self)(config))

    def _for_this_job(self) -> TrainConfig:
        """`config` with `%j` in its output folder replaced by this job's id."""
        import submitit

        job_id = str(submitit.JobEnvironment().job_id)
        return dataclasses.replace(self.config, output_dir=self.config.output_dir.replace("%j", job_id))


def _note_requeue_signal() -> Any:
    """Chain a flag onto submitit's preemption/timeout handler; returns a function saying whether it fired."""
    import signal

    import submitit

    number = getattr(submitit.JobEnvironment, "_usr_sig", lambda: signal.SIGUSR2)()
    previous = signal.getsignal(number)
    fired: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        fired.append(True)
        if callable(previous):
            previous(signum, frame)

    signal.signal(number, handler)
    return lambda: bool(fired)


def export_process_group_env() -> None:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT of this task, for `torch.distributed`'s env://."""
    import submitit

    job = submitit.JobEnvironment()
    torch_env = submitit.helpers.TorchDistributedEnvironment()  # the master port, drawn from the job id
    # One node: loopback, which needs no name resolution (a sandbox may not resolve its own host name).
    master = "127.0.0.1" if job.num_nodes == 1 else torch_env.master_addr
    os.environ.update(
        RANK=str(job.global_rank),
        WORLD_SIZE=str(job.num_tasks),
        LOCAL_RANK=str(job.local_rank),
        MASTER_ADDR=master,
        MASTER_PORT=str(torch_env.master_port),
    )


def submit_training(config: TrainConfig, options: SubmitOptions) -> tuple[Any, str]:
    """Submit `config` as one job: (submitit's `Job`, the run's output folder: `--output_dir`, else the job folder,
    with `%j` still in it)."""
    try:
        import submitit  # noqa: F401
    except ImportError as error:  # a declared dependency; only a broken install lacks it
        raise DeitError("deit submit needs submitit (pip install submitit)") from error
    from deit.engine.preflight import resolve_data_set, validate_config

    if options.cluster not in CLUSTERS:
        raise DeitError(f"--cluster {options.cluster}: choose one of {', '.join(CLUSTERS)}")
    cluster = options.cluster
    if cluster == "auto":
        if shutil.which("srun") is None:
            raise DeitError(
                "deit submit: no SLURM here (srun not found); --cluster local runs the job's tasks on this machine"
            )
        cluster = "slurm"
    if cluster == "local" and options.nodes != 1:
        raise DeitError(f"--nodes {options.nodes}: --cluster local runs on this one machine; pass --nodes 1")
    # Absolute: the tasks may start in another directory than this command.
    job_dir = str(Path(options.job_dir or default_job_dir()).absolute())
    # As official: the run's files go to the job folder (`%j` is the job id), unless --output_dir says otherwise.
    config = dataclasses.replace(config, output_dir=str(Path(config.output_dir or job_dir).absolute()))
    validate_config(resolve_data_set(config))  # a bad flag is one line now, not a failed job in a queue
    executor = make_executor(options, cluster=cluster, job_dir=job_dir, on_gpus=config.device != "cpu")
    try:
        return executor.submit(SubmititTrainer(config)), config.output_dir
    except Exception as error:  # sbatch's refusal (partition, limits ...) comes back as a failed command
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DeitError(f"deit submit: the {cluster} executor refused the job: {reason}") from error


def make_executor(options: SubmitOptions, *, cluster: str, job_dir: str, on_gpus: bool = True) -> Any:
    """submitit's executor with the official job shape: `nodes` nodes, `ngpus` tasks (and GPUs) per node, 10 CPUs
    and 40 GB per GPU, `timeout` minutes, the USR2 signal 120 s before the end, up to 30 requeues on timeout."""
    import submitit

    executor = submitit.AutoExecutor(folder=job_dir, cluster=cluster, slurm_max_num_timeout=30)
    slurm: dict[str, Any] = {"slurm_signal_delay_s": 120}
    if options.partition:
        slurm["slurm_partition"] = options.partition
    if options.use_volta32:
        slurm["slurm_constraint"] = "volta32gb"
    if options.comment:
        slurm["slurm_comment"] = options.comment
    executor.update_parameters(
        name="deit",
        mem_gb=40 * options.ngpus,
        gpus_per_node=options.ngpus if on_gpus else 0,
        tasks_per_node=options.ngpus,  # one task per GPU (per process with --device cpu)
        cpus_per_task=10,
        nodes=options.nodes,
        timeout_min=options.timeout,
        **(slurm if cluster == "slurm" else {}),
    )
    return executor


def describe_job(job: Any, config_output_dir: str) -> list[str]:
    """What `deit submit` prints: the job id, its folder, its logs and where the checkpoints go."""
    job_id = str(job.job_id)
    folder = Path(str(job.paths.folder))
    output = config_output_dir.replace("%j", job_id)
    return [
        f"submitted job {job_id}",
        f"job folder: {folder}",
        f"logs: {folder / f'{job_id}_0_log.out'} (task 0; task k: {job_id}_k_log.out / .err)",
        f"checkpoints and logs of the run: {output} (requeued after a timeout or preemption: --resume auto there)",
    ]
