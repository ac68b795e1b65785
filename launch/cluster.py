r"""Runs one training command on every worker of a TPU pod, or writes a SLURM job for GPUs.

TPU pod (creates the TPU VM if asked, copies the repo, runs on all workers at once):

  python -m launch.cluster tpu --name my-v5p-64 --zone us-east5-a \
      --accelerator v5p-64 --create -- \
      --config configs/sdit.py:XL --workdir gs://bucket/runs/xl --config.training.batch_size=1024

SLURM (multi-node GPU; one task per node, each driving all its GPUs):

  python -m launch.cluster slurm --nodes 4 --gpus_per_node 8 --partition a3 \
      --out runs/xl.sbatch -- --config configs/sdit.py:XL --workdir /shared/runs/xl
  sbatch runs/xl.sbatch

One machine, several processes (multi-host behaviour without a cluster; each process gets
4 simulated CPU devices here, gloo collectives and its prefixed output lines):

  python -m launch.cluster local --processes 2 --devices_per_process 4 -- \
      --config configs/sdit.py:tiny --workdir runs/two_hosts

Everything after `--` goes to `python -m launch.train` unchanged (`local` also takes a whole
command, e.g. `-- python my_script.py`). `--dry_run` prints the commands instead of running
them. On every worker `launch.train` calls `jax.distributed.initialize()`, which finds the
pod's or the SLURM job's peers by itself; `local` passes them in JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID.
"""

import argparse
import shlex
import subprocess
import sys

REMOTE_DIR = "~/anchored-jax"

SBATCH_TEMPLATE = """#!/bin/bash
#SBATCH --job-name={job_name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node={gpus_per_node}
#SBATCH --cpus-per-task={cpus_per_task}
#SBATCH --time={time}
#SBATCH --output={log_dir}/%x-%j.out
{partition_line}
# SIGTERM reaches the trainer {signal_seconds}s before the time limit: it saves and exits.
#SBATCH --signal=TERM@{signal_seconds}
set -euo pipefail
cd {repo_dir}
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.92
# jax.distributed.initialize() reads SLURM_* to find the coordinator and the process ids.
srun --kill-on-bad-exit=1 {python} -m launch.train {train_args}
"""


def train_command(python: str, train_args: list[str]) -> str:
    return f"{python} -m launch.train {shlex.join(train_args)}"


def tpu_commands(args: argparse.Namespace, train_args: list[str]) -> list[list[str]]:
    """The gcloud commands: optional create, copy the repo, install, run on all workers."""
    where = ["--zone", args.zone] + (["--project", args.project] if args.project else [])
    ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", args.name, *where, "--worker=all"]
    commands = []
    if args.create:
        commands.append(
            ["gcloud", "compute", "tpus", "tpu-vm", "create", args.name, *where,
             "--accelerator-type", args.accelerator, "--version", args.runtime_version]
        )  # fmt: skip
    commands.append(
        ["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", args.repo,
         f"{args.name}:{REMOTE_DIR}", *where, "--worker=all"]
    )  # fmt: skip
    install = f"cd {REMOTE_DIR} && python3 -m pip install -q -e . 'jax[tpu]'"
    commands.append([*ssh, "--command", install])
    run = f"cd {REMOTE_DIR} && {train_command('python3', train_args)}"
    commands.append([*ssh, "--command", run])
    return commands


def sbatch_script(args: argparse.Namespace, train_args: list[str]) -> str:
    return SBATCH_TEMPLATE.format(
        job_name=args.job_name,
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time,
        log_dir=args.log_dir,
        partition_line=f"#SBATCH --partition={args.partition}" if args.partition else "",
        signal_seconds=args.signal_seconds,
        repo_dir=args.repo,
        python=args.python,
        train_args=shlex.join(train_args),
    )


def split_at_dashes(argv: list[str]) -> tuple[list[str], list[str]]:
    """`(own, passed_on)`: the arguments before a bare `--`, and those after it (passed on)."""
    if "--" not in argv:
        return argv, []
    split = argv.index("--")
    return argv[:split], argv[split + 1 :]


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    argv, train_args = split_at_dashes(argv)
    parser = argparse.ArgumentParser(
        prog="python -m launch.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="target", required=True)
    local = sub.add_parser("local", help="run N processes of one job on this machine")
    local.add_argument("--processes", type=int, required=True, help="how many processes")
    local.add_argument(
        "--devices_per_process", type=int, default=None,
        help="simulated CPU devices per process (default: the platform's own devices)",
    )  # fmt: skip
    local.add_argument(
        "--grace_s", type=float, default=90.0,
        help="after one process fails, seconds before the others are killed",
    )  # fmt: skip
    local.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    tpu = sub.add_parser("tpu", help="run on every worker of a TPU pod slice")
    tpu.add_argument("--name", required=True, help="TPU VM name")
    tpu.add_argument("--zone", required=True)
    tpu.add_argument("--project", default=None)
    tpu.add_argument("--accelerator", default="v5p-8", help="accelerator type for --create")
    tpu.add_argument("--runtime_version", default="v2-alpha-tpuv5")
    tpu.add_argument("--create", action="store_true", help="create the TPU VM first")
    tpu.add_argument("--repo", default=".", help="local checkout to copy to the workers")
    tpu.add_argument("--dry_run", action="store_true", help="print the commands only")
    slurm = sub.add_parser("slurm", help="write (and optionally submit) an sbatch script")
    slurm.add_argument("--nodes", type=int, required=True)
    slurm.add_argument("--gpus_per_node", type=int, default=8)
    slurm.add_argument("--cpus_per_task", type=int, default=32)
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--time", default="24:00:00", help="job time limit, HH:MM:SS")
    slurm.add_argument("--signal_seconds", type=int, default=300)
    slurm.add_argument("--job_name", default="anchored-jax")
    slurm.add_argument("--log_dir", default="slurm-logs")
    slurm.add_argument("--repo", default=".", help="checkout path on the cluster's shared disk")
    slurm.add_argument("--python", default="python")
    slurm.add_argument("--out", required=True, help="where to write the sbatch script")
    slurm.add_argument("--submit", action="store_true", help="also run sbatch on it")
    args = parser.parse_args(argv)
    if args.target == "local":
        _check_local(parser, args, train_args)
        return args, train_args
    if "--config" not in train_args and not any(a.startswith("--config=") for a in train_args):
        parser.error("training arguments after `--` must include --config (and --workdir)")
    if args.target == "slurm" and args.nodes < 1:
        parser.error(f"--nodes: expected a positive count, got {args.nodes}")
    return args, train_args


def _check_local(parser, args: argparse.Namespace, command: list[str]) -> None:
    if args.processes < 1:
        parser.error(f"--processes: expected a positive count, got {args.processes}")
    if args.devices_per_process is not None and args.devices_per_process < 1:
        parser.error(f"--devices_per_process: expected >= 1, got {args.devices_per_process}")
    if not command:
        parser.error("local needs a command after `--` (launch.train flags or a program)")
    is_train = command[0].startswith("-")
    if (
        is_train
        and "--config" not in command
        and not any(a.startswith("--config=") for a in command)
    ):
        parser.error("training arguments after `--` must include --config (and --workdir)")


def local_command(command: list[str]) -> list[str]:
    """`launch.train` flags become a `launch.train` run; anything else runs as given."""
    if command[0].startswith("-"):
        return [sys.executable, "-m", "launch.train", *command]
    return command


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse(sys.argv[1:] if argv is None else argv)
    if args.target == "local":
        from anchored_jax.parallel.local_processes import run_local

        return run_local(
            local_command(train_args),
            args.processes,
            devices_per_process=args.devices_per_process,
            grace_s=args.grace_s,
            port=args.port,
        )
    if args.target == "tpu":
        for command in tpu_commands(args, train_args):
            print(shlex.join(command), flush=True)
            if not args.dry_run:
                subprocess.run(command, check=True)
        return 0
    with open(args.out, "w") as f:
        f.write(sbatch_script(args, train_args))
    print(f"wrote {args.out}")
    if args.submit:
        subprocess.run(["sbatch", args.out], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
