r"""Runs an ablation sweep: every variant of a sweep file trained, then scored, in its own workdir.

  python -m launch.sweep --config configs/sdit.py:tiny --sweep configs/sweeps/temporal.py \
      --workdir runs/sweep_temporal --set training.num_steps=300

Each variant gets `<workdir>/<name>`, the name made from its overrides (`sampler=loguniform_gaps`).
It is trained in this process exactly as `launch.train` would, then scored by the consistency
study on held-out synthetic clips (small: `eval.*` and `sampling.*` fields, see
configs/sweeps/__init__.py), which writes `<variant>/eval.json`; a `DONE` marker follows. A
rerun skips finished variants and resumes an interrupted one from its last checkpoint. At the
end `sweep_report.{md,png,json}` gather the variants in the workdir (also
`python -m launch.evaluate --sweep DIR --out DIR`).

A sweep with `train=False` (configs/sweeps/inference.py) scores sampler settings on one trained
checkpoint instead: `--checkpoint runs/sdit_tiny`.

On a pod or cluster, `--launcher tpu|slurm` hands each unfinished variant's training command to
`launch.cluster` (its own arguments after `--`); `--dry_run` prints the commands instead:

  python -m launch.sweep --config configs/sdit.py:S --sweep configs/sweeps/attention.py \
      --workdir /shared/sweeps/attention --launcher slurm -- --nodes 2 --partition a3

When the jobs are done, run the same sweep with `--launcher local` on a machine that sees the
workdir: the trained variants resume at their last step (nothing is retrained) and are scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from anchored_jax.diffusion.schedules import make_schedule  # noqa: E402
from anchored_jax.evaluation.consistency_study import frame_metrics, summarize  # noqa: E402
from anchored_jax.evaluation.sweep_report import write_sweep_report  # noqa: E402
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference  # noqa: E402
from anchored_jax.sampling.sampler_settings import METHODS, SamplerSettings, comparison_run  # noqa: E402
from anchored_jax.sampling.segment_plan import plan_segments  # noqa: E402
from anchored_jax.sampling.video_generation import generate_video, training_window_s  # noqa: E402
from anchored_jax.training.config_checks import validate_sdit_config  # noqa: E402
from configs.sweeps import (  # noqa: E402
    Sweep,
    SweepError,
    Variant,
    load_sweep,
    parse_assignment,
    resolve_variants,
)
from data_pipelines.inference_inputs import held_out_video, to_unit_range  # noqa: E402
from data_pipelines.pipeline import validate_data_config  # noqa: E402

DONE = "DONE"
FAILED = "FAILED"
EVAL_FILE = "eval.json"
EVAL_LOG = "eval_metrics.jsonl"  # the training loop's held-out evaluations, one JSON a line
SWEEP_FILE = "sweep.json"
LAUNCHERS = ("local", "tpu", "slurm")
SCORING = ("sampling", "eval")  # field namespaces of the evaluation, not of the config


# ---------------------------------------------------------------------------- set-up
def load_config(spec: str):
    """`path.py[:arg]` -> the file's `get_config(arg)`, as `launch.train --config` reads it."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise SweepError(f"--config {spec}: no such file {path!r}")
    module_spec = importlib.util.spec_from_file_location("sweep_base_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        return module.get_config(arg) if arg else module.get_config()
    except ValueError as e:
        raise SweepError(f"--config {spec}: {e}") from None


def prepare(args) -> tuple[Sweep, str, list[Variant]]:
    """Loads the sweep and its base config and resolves and checks every variant."""
    spec = load_sweep(args.sweep)
    config_spec = args.config or spec.base
    base = load_config(config_spec)
    extra = dict(parse_assignment(text) for text in args.set)
    variants = resolve_variants(spec, base, extra, args.sweep)
    for variant in variants:
        where = f"{args.sweep}: variant {variant.name}"
        _check_scoring(variant, where)
        if not spec.train:
            fields = {**spec.common, **extra, **variant.overrides}
            config_fields = [f for f in fields if f.split(".")[0] not in SCORING]
            if config_fields:
                raise SweepError(
                    f"{where}: {config_fields[0]}: a train=False sweep sets only sampling.* and "
                    "eval.* fields (the checkpoint fixes the model)"
                )
            continue
        _check_run_config(variant.config, where)
    if args.only and args.only not in {v.name for v in variants}:
        raise SweepError(f"--only {args.only}: expected one of {[v.name for v in variants]}")
    return spec, config_spec, variants


def _check_scoring(variant: Variant, where: str) -> None:
    """The evaluation's settings: valid `SamplerSettings`, methods and sizes."""
    settings = {k: v for k, v in variant.sampling.items() if k != "plan"}
    settings["max_anchor_gap_s"] = max(settings["max_anchor_gap_s"], 0.0)  # -1 = auto
    try:
        SamplerSettings(**settings)
    except (TypeError, ValueError) as e:
        raise SweepError(f"{where}: {e}") from None
    evaluation = variant.evaluation
    unknown = [m for m in evaluation["methods"] if m not in METHODS]
    if unknown or not evaluation["methods"]:
        raise SweepError(f"{where}: eval.methods: expected a subset of {list(METHODS)}, got "
                         f"{list(evaluation['methods'])}")  # fmt: skip
    for field, lowest in (("frames", 2), ("clips", 1)):
        value = evaluation[field]
        if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
            raise SweepError(f"{where}: eval.{field}: expected an int >= {lowest}, got {value!r}")


def _check_run_config(config, where: str) -> None:
    """The trainer's own checks, run on every variant before the first one trains."""
    if config.get("task", "sdit") != "sdit":
        return
    try:
        validate_sdit_config(config)
        validate_data_config(config.data)
    except ValueError as e:
        raise SweepError(f"{where}: {e}") from None


def train_args(config_spec: str, workdir: str, variant: Variant, spec: Sweep, extra) -> list[str]:
    """The `launch.train` arguments that reproduce the variant's config from the command line."""
    fields = {**spec.common, **extra, **variant.overrides}
    args = ["--config", config_spec, "--workdir", workdir]
    for field, value in fields.items():
        if field.split(".")[0] not in SCORING:
            args.append(f"--config.{field}={value}")
    return args


# ---------------------------------------------------------------------------- one variant
def train_variant(command: list[str]) -> None:
    """Trains (or resumes) the variant with `python -m launch.train <command>`, the command a
    cluster job runs too; its one-line error becomes the variant's failure."""
    env = dict(os.environ)
    cache = jax.config.jax_compilation_cache_dir
    if cache:  # the same persistent compilation cache as this process
        env["JAX_COMPILATION_CACHE_DIR"] = cache
    result = subprocess.run(
        [sys.executable, "-m", "launch.train", *command], env=env, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or [f"exit status {result.returncode}"]
        sys.stderr.write(result.stderr[-3000:])
        raise SystemExit(lines[-1])


def training_numbers(workdir: str) -> dict | None:
    """The run's last held-out evaluation and its last logged train loss, or None."""
    path = os.path.join(workdir, EVAL_LOG)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        last = json.loads(f.read().strip().splitlines()[-1])
    return dict(
        step=last["step"],
        train_loss=last_scalar(workdir, "train_loss"),
        eval_loss=last["eval_loss"],
        eval_loss_ema=last["eval_loss_ema"],
    )


def last_scalar(workdir: str, tag: str) -> float | None:
    """The value of `tag` at the highest step in the workdir's TensorBoard event files.

    Imported here: tensorboard's event reader loads TensorFlow, which only this needs.
    """
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    best = None
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.tag == tag and (best is None or event.step >= best[0]):
                    best = (event.step, float(tensor_util.make_ndarray(value.tensor)))
    return None if best is None else best[1]


def evaluate_variant(loaded, sampling: dict, evaluation: dict) -> dict:
    """The consistency study, small: each method and copy-source on held-out synthetic clips."""
    config, graphdef, params = loaded
    settings = dict(sampling)
    plan_kind = settings.pop("plan")
    if settings["max_anchor_gap_s"] < 0:
        settings["max_anchor_gap_s"] = training_window_s(config)
    frames, clips, methods = evaluation["frames"], evaluation["clips"], evaluation["methods"]
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    videos = held_out_video(config, 0, frames)
    if clips > len(videos):
        raise ValueError(f"eval.clips: only {len(videos)} held-out videos, got {clips}")
    per_method = {m: [] for m in (*methods, "copy_source")}
    seconds = dict.fromkeys(methods, 0.0)
    for clip in range(clips):
        record = videos[clip]
        real_THWC = to_unit_range(videos.read_frames(clip, np.arange(frames)))
        landmarks_TLC = record.landmarks_TLC
        copy_THWC = np.broadcast_to(real_THWC[:1], real_THWC.shape)
        per_method["copy_source"].append(frame_metrics(copy_THWC, real_THWC, landmarks_TLC))
        for method in methods:
            kind, chosen = comparison_run(method, plan_kind, **settings)
            plan = plan_segments(frames, config.data.clip_frames, 0, kind, seed=evaluation["seed"])
            start = time.perf_counter()
            video_THWC, _ = generate_video(
                graphdef, params, schedule,
                prediction=config.diffusion.prediction, plan=plan,
                landmarks_TLC=landmarks_TLC, frame_times_T=np.arange(frames) / record.fps,
                identity=real_THWC[0], source_HWC=real_THWC[0],
                settings=chosen, key=jax.random.key(evaluation["seed"] + clip),
            )  # fmt: skip
            seconds[method] += time.perf_counter() - start
            per_method[method].append(frame_metrics(video_THWC, real_THWC, landmarks_TLC))
    return dict(
        frames=frames,
        clips=clips,
        plan=plan_kind,
        sampling={
            k: v
            for k, v in dataclasses.asdict(SamplerSettings(**settings)).items()
            if k != "method"
        },
        seconds=seconds,
        methods=summarize(per_method),
    )


def write_atomic(path: str, text: str) -> None:
    """Writes via a temporary file and a rename, so a reader never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def run_variant(variant: Variant, workdir: str, spec: Sweep, checkpoint: str | None, cache,
                command: list[str]):  # fmt: skip
    """Trains (if the sweep trains) and scores one variant, then marks it DONE."""
    os.makedirs(workdir, exist_ok=True)
    started = time.perf_counter()
    if spec.train:
        train_variant(command)
        checkpoint = workdir
    trained = time.perf_counter()
    if checkpoint not in cache:
        cache.clear()
        cache[checkpoint] = load_sdit_for_inference(checkpoint)
    result = evaluate_variant(cache[checkpoint], variant.sampling, variant.evaluation)
    record = dict(
        name=variant.name,
        overrides=variant.overrides,
        checkpoint=os.path.abspath(checkpoint),
        train=training_numbers(checkpoint),
        train_seconds=trained - started if spec.train else 0.0,
        eval_seconds=time.perf_counter() - trained,
        **result,
    )
    write_atomic(os.path.join(workdir, EVAL_FILE), json.dumps(record, indent=1))
    write_atomic(os.path.join(workdir, DONE), time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    if os.path.exists(os.path.join(workdir, FAILED)):  # an earlier attempt's
        os.remove(os.path.join(workdir, FAILED))
    return record


# ---------------------------------------------------------------------------- the command
def local_command(args, spec: Sweep, train_command: list[str], name: str) -> str:
    """What a local run does for one variant: its training command, or (scoring only) this
    command restricted to it."""
    if spec.train:
        return f"python -m launch.train {shlex.join(train_command)}"
    argv = ["--sweep", args.sweep, "--workdir", args.workdir, "--checkpoint", args.checkpoint]
    argv += [a for text in args.set for a in ("--set", text)]
    return f"python -m launch.sweep {shlex.join([*argv, '--only', name])}"


def _text(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def enable_compilation_cache(args) -> None:
    """Variants that differ only in data or sampling settings compile the same programs: with
    a persistent cache the second and later ones skip XLA's compiler (most of a short run)."""
    path = args.compilation_cache
    if path is None:
        path = os.path.join(args.workdir, "compilation_cache")
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.abspath(path))


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    # Arguments after a bare `--` are launch.cluster's own.
    split = argv.index("--") if "--" in argv else len(argv)
    argv, cluster_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m launch.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sweep", required=True, help="sweep file, e.g. configs/sweeps/temporal.py"
    )
    parser.add_argument("--workdir", required=True, help="one subfolder per variant goes here")
    parser.add_argument("--config", default=None, help="base config; default: the sweep's base")
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="override for every variant (repeatable), e.g. training.num_steps=200",
    )  # fmt: skip
    parser.add_argument("--checkpoint", default=None, help="trained run for a train=False sweep")
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS)
    parser.add_argument("--dry_run", action="store_true", help="print each variant's command")
    parser.add_argument("--only", default=None, help="run just this variant (by its name)")
    parser.add_argument("--no_report", action="store_true", help="skip the sweep report")
    parser.add_argument(
        "--compilation_cache", default=None,
        help="JAX's persistent compilation cache; default <workdir>/compilation_cache, '' = off",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if cluster_args and args.launcher == "local":
        parser.error("arguments after `--` are for --launcher tpu|slurm (launch.cluster)")
    return args, cluster_args


def main(argv: list[str] | None = None) -> int:
    args, cluster_args = parse(sys.argv[1:] if argv is None else argv)
    try:
        spec, config_spec, variants = prepare(args)
        if not spec.train and not args.checkpoint:
            raise SweepError(f"--checkpoint: {args.sweep} scores a trained run; give its workdir")
        if not spec.train and args.launcher != "local":
            raise SweepError(f"--launcher: {args.sweep} trains nothing; run it with local")
        if "--out" in cluster_args:
            raise SweepError("--out: launch.sweep writes each variant's script to its workdir")
    except SweepError as e:
        sys.exit(f"error: {e}")
    extra = dict(parse_assignment(text) for text in args.set)
    todo = [v for v in variants if args.only in (None, v.name)]
    if not args.dry_run:
        os.makedirs(args.workdir, exist_ok=True)
        write_atomic(
            os.path.join(args.workdir, SWEEP_FILE),
            json.dumps(
                dict(
                    sweep=args.sweep, config=config_spec, set=args.set,
                    variants={v.name: v.overrides for v in variants},
                ),
                indent=1,
            ),
        )  # fmt: skip
    if args.launcher == "local" and not args.dry_run:
        enable_compilation_cache(args)
    failed, cache = [], {}
    for variant in todo:
        workdir = os.path.join(args.workdir, variant.name)
        if os.path.exists(os.path.join(workdir, DONE)):
            print(f"{variant.name}: done, skipped", flush=True)
            continue
        command = train_args(config_spec, workdir, variant, spec, extra)
        if args.launcher != "local":
            cluster_argv = [args.launcher, *cluster_args]
            if args.launcher == "slurm":
                cluster_argv += ["--out", os.path.join(workdir, "train.sbatch")]
                if "--job_name" not in cluster_args:
                    cluster_argv += ["--job_name", variant.name]
            cluster_argv += ["--", *command]
            if args.dry_run:
                print(f"python -m launch.cluster {shlex.join(cluster_argv)}", flush=True)
                continue
            os.makedirs(workdir, exist_ok=True)
            subprocess.run([sys.executable, "-m", "launch.cluster", *cluster_argv], check=True)
            continue
        if args.dry_run:
            print(local_command(args, spec, command, variant.name), flush=True)
            continue
        print(f"{variant.name}: {'training' if spec.train else 'scoring'}", flush=True)
        try:
            record = run_variant(variant, workdir, spec, args.checkpoint, cache, command)
        except (SystemExit, ValueError) as e:  # the trainer's one-line exits, bad settings
            message = str(e.code if isinstance(e, SystemExit) else e)
            write_atomic(os.path.join(workdir, FAILED), message + "\n")
            print(f"{variant.name}: failed: {message}", flush=True)
            failed.append(variant.name)
            continue
        psnr = record["methods"][variant.evaluation["methods"][0]]["psnr_moved_mean"]
        print(
            f"{variant.name}: done; PSNR on moved frames {_text(psnr, '.2f')} dB, "
            f"{record['train_seconds']:.0f} s training, {record['eval_seconds']:.0f} s scoring",
            flush=True,
        )
    if args.launcher == "local" and not args.dry_run and not args.no_report:
        try:
            print(write_sweep_report(args.workdir, args.workdir)["table"], flush=True)
        except ValueError as e:  # nothing finished yet
            print(f"no report: {e}", file=sys.stderr)
    if failed:
        print(f"error: {len(failed)} variant(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
