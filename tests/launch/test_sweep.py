"""`python -m launch.sweep`: one folder per variant named after its overrides, a rerun skips
finished variants, the report repeats the variants' own numbers, the cluster launchers get each
variant's command, and a bad sweep fails in one line before anything runs."""

import glob
import json
import os
import shlex

import numpy as np
import pytest
from PIL import Image

from anchored_jax.evaluation.sweep_report import write_sweep_report
from configs import sdit
from configs.sweeps import (
    Sweep,
    SweepError,
    load_sweep,
    product,
    resolve_variants,
    sweep,
    variant_names,
    zipped,
)
from launch import sweep as sweep_cli
from tests.cli_testing import REPO, run_module

# The small model and data of tests/training/test_trainer.py, three steps, a 9-frame study.
SMALL = {
    "data.clip_frames": 3,
    "data.num_train_identities": 8,
    "data.num_test_identities": 2,
    "data.videos_per_identity": 2,
    "data.video_frames": 24,
    "data.max_window": 16,
    "model.width": 32,
    "model.depth": 2,
    "model.num_heads": 2,
    "model.patch_size": 8,
    "training.batch_size": 4,
    "training.num_steps": 3,
    "training.warmup_steps": 2,
    "mesh.num_devices": 1,
    "checkpoint.every_steps": 100,
    "logging.log_every_steps": 1,
    "logging.eval_every_steps": 100,
    "logging.eval_batches": 1,
    "logging.sample_every_steps": 100,
    "logging.sample_clips": 2,
    "logging.sample_steps": 2,
    "eval.frames": 9,
    "sampling.num_steps": 2,
}
SAMPLERS = ["uniform_stride", "loguniform_gaps"]
NAMES = [f"sampler={s}" for s in SAMPLERS]


def write_sweep(path, variants, common=SMALL, train=True) -> str:
    path.write_text(
        "from configs.sweeps import Sweep\n\n\ndef get_sweep():\n"
        f"    return Sweep(base='configs/sdit.py:tiny', variants={variants!r}, "
        f"common={common!r}, train={train!r})\n"
    )
    return str(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A two-variant sweep run to the end through the command line."""
    root = tmp_path_factory.mktemp("sweep")
    sweep_file = write_sweep(root / "two.py", sweep("data.sampler", SAMPLERS))
    workdir = root / "work"
    result = run_module("launch.sweep", "--sweep", sweep_file, "--workdir", workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(root=root, sweep=sweep_file, workdir=workdir, stdout=result.stdout)


@pytest.mark.slow  # the sweep trains two variants
def test_variants_get_named_folders_with_results(finished):
    workdir = finished["workdir"]
    assert sorted(p.name for p in workdir.iterdir() if p.is_dir()) == sorted(
        ["compilation_cache", *NAMES]
    )
    for name, sampler in zip(NAMES, SAMPLERS, strict=True):
        folder = workdir / name
        assert (folder / "DONE").exists() and (folder / "checkpoints").is_dir()
        record = json.loads((folder / "eval.json").read_text())
        assert record["overrides"] == {"data.sampler": sampler}
        assert record["train"]["step"] == 3
        config = json.loads((folder / "config.json").read_text())
        assert config["data"]["sampler"] == sampler and config["model"]["width"] == 32
        anchored, copy = record["methods"]["anchored"], record["methods"]["copy_source"]
        assert anchored["frames"] == copy["frames"] == 8  # 9 frames less the anchor
        # A 3-step model is far from the copy-source baseline; both are real PSNRs.
        assert 5.0 < anchored["psnr_mean"] < copy["psnr_mean"] < 60.0
        assert 0.0 < record["train"]["train_loss"] < 1.0
    assert all(f"{name}: done" in finished["stdout"] for name in NAMES)


@pytest.mark.slow  # the sweep trains two variants
def test_report_repeats_the_variants_numbers(finished, tmp_path):
    report = write_sweep_report(str(finished["workdir"]), str(tmp_path))
    assert [r["variant"] for r in report["rows"]] == NAMES and report["missing"] == []
    table = (tmp_path / "sweep_report.md").read_text()
    for row in report["rows"]:
        record = json.loads((finished["workdir"] / row["variant"] / "eval.json").read_text())
        anchored, copy = record["methods"]["anchored"], record["methods"]["copy_source"]
        assert row["psnr_moved"] == anchored["psnr_moved_mean"]
        assert row["copy_source_psnr_moved"] == copy["psnr_moved_mean"]
        assert row["drift_slope"] == anchored["drift_slope_per_100_frames"]
        assert row["train_loss"] == record["train"]["train_loss"]
        assert row["eval_loss_ema"] == record["train"]["eval_loss_ema"]
        line = next(li for li in table.splitlines() if li.startswith(f"| {row['variant']} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == f"{record['train']['train_loss']:.4f}"
        assert cells[5] == f"{anchored['psnr_moved_mean']:.2f}"
        assert cells[6] == f"{copy['psnr_moved_mean']:.2f}"
    assert json.loads((tmp_path / "sweep_report.json").read_text())["rows"] == report["rows"]
    image = np.asarray(Image.open(tmp_path / "sweep_report.png"))
    assert image.shape == (440, 720, 3) and (image < 128).any()  # drawn on, not blank


@pytest.mark.slow  # the sweep trains two variants
def test_rerun_skips_finished_variants(finished, capsys):
    workdir = finished["workdir"]
    before = {p: os.path.getmtime(p) for p in glob.glob(str(workdir / "*" / "*"))}
    argv = ["--sweep", finished["sweep"], "--workdir", str(workdir), "--compilation_cache", ""]
    assert sweep_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if "skipped" in line] == [
        f"{name}: done, skipped" for name in NAMES
    ]
    assert {p: os.path.getmtime(p) for p in glob.glob(str(workdir / "*" / "*"))} == before


@pytest.mark.slow  # a third process and a checkpoint load: about as long as the sweep itself
def test_inference_sweep_scores_one_checkpoint(finished):
    variants = [{"sampling.plan": "contiguous"}, {"sampling.plan": "strided"}]
    common = {"eval.frames": 9, "sampling.num_steps": 2}
    sweep_file = write_sweep(finished["root"] / "plans.py", variants, common, train=False)
    checkpoint = finished["workdir"] / NAMES[0]
    workdir = finished["root"] / "plans"
    result = run_module(
        "launch.sweep", "--sweep", sweep_file, "--workdir", workdir, "--checkpoint", checkpoint,
        "--compilation_cache", finished["workdir"] / "compilation_cache",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [
        json.loads((workdir / n / "eval.json").read_text())
        for n in ["plan=contiguous", "plan=strided"]
    ]
    assert [r["plan"] for r in records] == ["contiguous", "strided"]
    trained = json.loads((checkpoint / "eval.json").read_text())
    # The contiguous plan and seed are the training sweep's own evaluation: same numbers.
    assert records[0]["methods"]["anchored"]["psnr_mean"] == pytest.approx(
        trained["methods"]["anchored"]["psnr_mean"], abs=1e-4
    )
    assert (
        records[1]["methods"]["anchored"]["psnr_mean"]
        != records[0]["methods"]["anchored"]["psnr_mean"]
    )


def test_cluster_launchers_get_each_variants_command(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "two.py", sweep("data.sampler", SAMPLERS))
    workdir = tmp_path / "work"
    base = ["--sweep", sweep_file, "--workdir", str(workdir), "--set", "seed=1"]
    assert sweep_cli.main([*base, "--launcher", "slurm", "--dry_run", "--", "--nodes", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and not workdir.exists()  # a dry run writes nothing
    for line, name, sampler in zip(lines, NAMES, SAMPLERS, strict=True):
        argv = shlex.split(line)
        assert argv[:6] == ["python", "-m", "launch.cluster", "slurm", "--nodes", "2"]
        train = argv[argv.index("--") + 1 :]
        assert train[:4] == ["--config", "configs/sdit.py:tiny", "--workdir", str(workdir / name)]
        assert f"--config.data.sampler={sampler}" in train
        assert "--config.seed=1" in train and "--config.model.width=32" in train
        assert not any(a.startswith(("--config.eval.", "--config.sampling.")) for a in train)
    # Without --dry_run the SLURM scripts are written (not submitted), one per variant.
    assert sweep_cli.main([*base, "--launcher", "slurm", "--", "--nodes", "2"]) == 0
    script = (workdir / NAMES[1] / "train.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and f"#SBATCH --job-name={NAMES[1]}" in script
    assert f"--config.data.sampler={SAMPLERS[1]}" in script.strip().splitlines()[-1]
    capsys.readouterr()
    assert (
        sweep_cli.main(
            [*base, "--launcher", "tpu", "--dry_run", "--", "--name", "p", "--zone", "z"]
        )
        == 0
    )
    tpu_lines = capsys.readouterr().out.strip().splitlines()
    assert [shlex.split(li)[3:8] for li in tpu_lines] == [["tpu", "--name", "p", "--zone", "z"]] * 2
    # Locally, a dry run prints the training commands launch.sweep runs in-process.
    (workdir / NAMES[1] / "DONE").write_text("")
    assert sweep_cli.main([*base, "--dry_run"]) == 0
    local = capsys.readouterr().out.strip().splitlines()
    assert local[1] == f"{NAMES[1]}: done, skipped"
    argv = shlex.split(local[0])
    assert argv[:5] == ["python", "-m", "launch.train", "--config", "configs/sdit.py:tiny"]
    assert argv[5:7] == ["--workdir", str(workdir / NAMES[0])]
    assert f"--config.data.sampler={SAMPLERS[0]}" in argv


@pytest.mark.parametrize(
    "variants, extra, expected",
    [
        (
            [{"data.temporal_sampler": "uniform_stride"}],
            [],
            "unknown config field 'data.temporal_sampler'",
        ),
        (
            [{"data.sampler": "every_other"}],
            [],
            "variant sampler=every_other: data.sampler: expected one of",
        ),
        ([{"sampling.plan": "diagonal"}], [], "sampling.plan: expected one of"),
        ([{"sampling.known_anchor_mode": "x"}], [], "sampling.known_anchor_mode: expected one"),
        ([{"eval.methods": "anchored,best"}], [], "eval.methods: expected a subset of"),
        (
            [{"data.sampler": "uniform_stride"}],
            ["--set", "training.num_steps=many"],
            "--set: training.num_steps: expected a value of type int",
        ),
    ],
)
def test_bad_sweep_is_one_line_before_anything_runs(tmp_path, variants, extra, expected):
    sweep_file = write_sweep(tmp_path / "bad.py", variants, common={})
    workdir = tmp_path / "work"
    with pytest.raises(SystemExit) as exit_info:
        sweep_cli.main(["--sweep", sweep_file, "--workdir", str(workdir), *extra])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message and expected in message, message
    if "--set" not in extra:
        assert message.startswith(f"error: {sweep_file}: ")
    assert not workdir.exists()


def test_product_zip_and_names():
    grid = product(
        sweep("model.attention", ["joint", "factorized"]), sweep("data.sampler", ["a", "b"])
    )
    assert grid == [
        {"model.attention": "joint", "data.sampler": "a"},
        {"model.attention": "joint", "data.sampler": "b"},
        {"model.attention": "factorized", "data.sampler": "a"},
        {"model.attention": "factorized", "data.sampler": "b"},
    ]
    assert zipped(sweep("a.x", [1, 2]), sweep("b.y", [True, False])) == [
        {"a.x": 1, "b.y": True},
        {"a.x": 2, "b.y": False},
    ]
    with pytest.raises(SweepError, match="equal length"):
        zipped(sweep("a.x", [1, 2]), sweep("b.y", [1]))
    # Leaf names when unique, dotted names when two fields share a leaf; unsafe characters go.
    assert variant_names([{"data.seed": 1, "training.seed": 2}, {"data.root": "/x y"}, {}]) == [
        "data.seed=1+training.seed=2",
        "root=_x_y",
        "base",
    ]


REPO_SWEEPS = sorted(glob.glob(os.path.join(REPO, "configs", "sweeps", "[!_]*.py")))


@pytest.mark.parametrize("path", REPO_SWEEPS, ids=os.path.basename)
def test_repository_sweeps_resolve_on_their_base(path):
    spec = load_sweep(path)
    variants = resolve_variants(spec, sdit.get_config("tiny"), {}, path)
    assert len({v.name for v in variants}) == len(spec.variants) >= 2
    for variant in variants:
        if spec.train:
            sweep_cli._check_run_config(variant.config, path)
    if os.path.basename(path) == "temporal.py":
        assert [v.config.data.sampler for v in variants] == [
            "uniform_stride",
            "random_subset",
            "loguniform_gaps",
        ]
    if not spec.train:
        assert {v.sampling["plan"] for v in variants} == {"contiguous", "strided", "random"}


def test_sweep_must_be_a_sweep(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text("def get_sweep():\n    return [{'data.sampler': 'a'}]\n")
    with pytest.raises(SweepError, match="get_sweep\\(\\) must return a Sweep, got list"):
        load_sweep(str(path))
    assert isinstance(Sweep("b", [{}]), Sweep)
