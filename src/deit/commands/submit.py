"""`deit submit`: `deit train`'s flags plus the official `run_with_submitit.py` ones, handed to `deit.engine.submit`."""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The training flags, then the official submitit flags (same names, meaning and defaults but --partition's)."""
    parser.description = (
        "Submit a `deit train` run as a SLURM job through submitit, as the official run_with_submitit.py: one "
        "task per GPU, --nodes nodes, requeued with --resume auto on preemption or timeout. The run's files go to "
        "--job_dir (%%j: the job id) unless --output_dir is given."
    )
    from deit.engine.config import add_train_arguments
    from deit.engine.submit import CLUSTERS, SubmitOptions

    add_train_arguments(parser)
    defaults = SubmitOptions()
    group = parser.add_argument_group("submitit (official run_with_submitit.py)")
    group.add_argument("--ngpus", type=int, default=defaults.ngpus, help="GPUs (= tasks) per node (default: 8)")
    group.add_argument("--nodes", type=int, default=defaults.nodes, help="nodes to request (default: 2)")
    group.add_argument("--timeout", type=int, default=defaults.timeout, help="job duration in minutes (default: 2800)")
    group.add_argument(
        "--job_dir", "--job-dir", default="", help="job folder, %%j for the job id (default: runs/submit/%%j)"
    )
    group.add_argument("--partition", default="", help="SLURM partition (default: the cluster's default)")
    group.add_argument("--use_volta32", "--use-volta32", action="store_true", help="request 32 GB V100s")
    group.add_argument("--comment", default="", help="comment passed to the scheduler, e.g. a priority message")
    group.add_argument(
        "--cluster",
        default=defaults.cluster,
        choices=CLUSTERS,
        help="auto: SLURM (refused where srun is missing); local: the tasks on this machine (ours)",
    )


def run(args: argparse.Namespace) -> int:
    """Validate the run, submit it and print the job's id, folder, logs and output folder; 0 once submitted."""
    from deit.engine.config import config_from_args
    from deit.engine.submit import SubmitOptions, describe_job, submit_training

    options = SubmitOptions(
        ngpus=args.ngpus,
        nodes=args.nodes,
        timeout=args.timeout,
        job_dir=args.job_dir,
        partition=args.partition,
        use_volta32=args.use_volta32,
        comment=args.comment,
        cluster=args.cluster,
    )
    job, output_dir = submit_training(config_from_args(args), options)
    for line in describe_job(job, output_dir):
        print(line)
    return 0
