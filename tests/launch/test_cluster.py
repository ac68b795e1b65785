"""The pod and cluster launchers generate the commands a user would type."""

import shlex

import pytest

from launch import cluster

TRAIN = ["--config", "configs/sdit.py:XL", "--workdir", "gs://b/run", "--config.seed=3"]


def test_tpu_runs_the_same_train_command_on_every_worker(capsys):
    assert (
        cluster.main(
            ["tpu", "--name", "pod", "--zone", "z1", "--create", "--dry_run", "--", *TRAIN]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("gcloud compute tpus tpu-vm create pod --zone z1")
    run = shlex.split(lines[-1])
    assert run[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
    assert "--worker=all" in run
    remote = run[run.index("--command") + 1]
    assert remote.endswith("python3 -m launch.train " + shlex.join(TRAIN))


def test_slurm_script_has_one_task_per_node_and_the_train_command(tmp_path, capsys):
    out = tmp_path / "job.sbatch"
    args = ["slurm", "--nodes", "4", "--gpus_per_node", "8", "--partition", "a3", "--out", str(out)]
    assert cluster.main([*args, "--", *TRAIN]) == 0
    script = out.read_text()
    assert "#SBATCH --nodes=4" in script and "#SBATCH --ntasks-per-node=1" in script
    assert "#SBATCH --gpus-per-node=8" in script and "#SBATCH --partition=a3" in script
    assert "#SBATCH --signal=TERM@300" in script
    assert script.strip().endswith("python -m launch.train " + shlex.join(TRAIN))


def test_missing_config_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cluster.main(["slurm", "--nodes", "2", "--out", "x.sbatch", "--", "--workdir", "w"])
    assert exit_info.value.code == 2
    assert "must include --config" in capsys.readouterr().err


def test_local_runs_launch_train_for_flags_and_any_program_as_given():
    args, rest = cluster.parse(["local", "--processes", "2", "--", *TRAIN])
    assert args.processes == 2 and args.devices_per_process is None
    assert cluster.local_command(rest)[1:] == ["-m", "launch.train", *TRAIN]
    _, rest = cluster.parse(["local", "--processes", "3", "--", "python", "job.py", "--x"])
    assert cluster.local_command(rest) == ["python", "job.py", "--x"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["local", "--processes", "0", "--", *TRAIN], "--processes: expected a positive count"),
        (["local", "--processes", "2"], "local needs a command after `--`"),
        (["local", "--processes", "2", "--", "--workdir", "w"], "must include --config"),
        (["local", "--processes", "2", "--devices_per_process", "0", "--", *TRAIN],
         "--devices_per_process: expected >= 1"),
    ],
)  # fmt: skip
def test_bad_local_arguments_are_one_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cluster.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_local_process_environment_names_the_job_and_its_devices():
    from anchored_jax.parallel.local_processes import process_env

    env = process_env(
        1, 2, 4321, 4, base={"XLA_FLAGS": "--xla_force_host_platform_device_count=8 --a"}
    )
    assert env["JAX_COORDINATOR_ADDRESS"] == "127.0.0.1:4321"
    assert (env["JAX_NUM_PROCESSES"], env["JAX_PROCESS_ID"]) == ("2", "1")
    assert env["XLA_FLAGS"] == (
        "--a --xla_cpu_collective_call_terminate_timeout_seconds=600"
        " --xla_force_host_platform_device_count=4"
    )
    assert env["JAX_PLATFORMS"] == "cpu"
    # A collective timeout the caller chose is kept.
    chosen = "--xla_cpu_collective_call_terminate_timeout_seconds=5"
    env = process_env(0, 2, 4321, 2, base={"XLA_FLAGS": chosen})
    assert env["XLA_FLAGS"] == f"{chosen} --xla_force_host_platform_device_count=2"
