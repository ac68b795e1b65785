r"""The evaluation report: every sampler on held-out clips, scored, tabled and plotted.

  python -m launch.evaluate --checkpoint runs/sdit_tiny --frames 256 --clips 1 \
      --out runs/sdit_tiny/consistency
  python -m launch.evaluate --checkpoint runs/sdit_s --data video_dir:/data/vox256/ \
      --methods anchored,independent --lpips_weights weights/lpips/ \
      --inception_weights weights/pt_inception.pth --i3d_weights weights/i3d.pt --out reports/s
  python -m launch.evaluate --animator runs/leo_animator --lmdm runs/leo_lmdm --out reports/leo
  python -m launch.evaluate --sweep runs/sweeps/temporal --out reports/temporal

Self-reenactment of held-out clips: the source is the clip's frame 0, the driving signal its
landmarks, ground truth its frames. `--data` picks the clips: by default the checkpoint's own
held-out (test) split; `synthetic` (the run's held-out synthetic faces); `video_dir:ROOT` or
`frame_dir:ROOT` (the test/ videos of a dataset folder, see docs/real_data.md). Each method in
`--methods` and the copy-source baseline (repeat the source frame) are scored with
`anchored_jax.evaluation.metric_suite`; metrics whose weights are not given are reported as
skipped, with the reason.

Writes into `--out`: `metrics.json`, `report.md`, `drift_vs_distance.png`,
`psnr_vs_distance.png`, `ssim_vs_distance.png`, for the first `--sample_clips` clips a
side-by-side video per method and one comparing them all, and the consistency study's
`results.json` / `results.md`. Every finished (method, clip) is saved at once to
`parts/<method>_<clip>.npz`: an interrupted run, run again, computes only what is missing.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from anchored_jax.diffusion.schedules import make_schedule  # noqa: E402
from anchored_jax.evaluation import metric_suite, report  # noqa: E402
from anchored_jax.evaluation.consistency_metrics import l1_T, psnr_T, ssim_T  # noqa: E402
from anchored_jax.evaluation.consistency_study import markdown_table  # noqa: E402
from anchored_jax.sampling.frame_codec import frame_codec  # noqa: E402
from anchored_jax.sampling.sampler_settings import METHODS, comparison_run  # noqa: E402
from anchored_jax.sampling.segment_plan import PLAN_KINDS, plan_segments  # noqa: E402
from anchored_jax.sampling.video_generation import generate_video, training_window_s  # noqa: E402
from anchored_jax.training.inference_checkpoint import load_sdit_for_inference  # noqa: E402
from launch.reenact import (  # noqa: E402
    held_out_video,
    progress_bar,
    render_landmarks,
    to_display,
    to_unit_range,
    write_outputs,
)

COPY = "copy_source"
REFERENCE = "reference"
DATA_KINDS = ("video_dir", "frame_dir")


def parse_data(spec: str) -> tuple[str, str]:
    """`--data` as `(kind, root)`: ('', '') is the run's own held-out split."""
    kind, _, root = spec.partition(":")
    if spec in ("", "synthetic") or (kind in DATA_KINDS and root):
        return kind, root
    raise ValueError(
        f"--data: expected '', synthetic, video_dir:ROOT or frame_dir:ROOT, got {spec!r}"
    )


def held_out_clips(config, data: str, frames: int, clips: int):
    """`(source, video_ids)`: the first `clips` held-out videos with at least `frames` frames."""
    kind, root = parse_data(data)
    kind = kind or config.data.source
    if kind == "synthetic":
        source = held_out_video(config, 0, frames)
    elif kind in DATA_KINDS:
        from data_pipelines.pipeline import make_source

        data_config = ml_collections.ConfigDict(config.data.to_dict())
        data_config.update(source=kind, root=root or config.data.root, vae="")
        source = make_source(data_config, "test")
    else:
        raise ValueError(
            f"--data: the run trains on data.source={kind!r}; give the held-out pixel videos, "
            "e.g. --data video_dir:ROOT"
        )
    spec = data or kind
    ids = [v for v in range(len(source)) if source[v].num_frames >= frames][:clips]
    if len(ids) < clips:
        raise ValueError(
            f"--clips: {spec} has only {len(ids)} held-out videos of >= {frames} frames, "
            f"asked for {clips}"
        )
    return source, ids


def _generate(loaded, codec, method, clip, real_THWC, landmarks_TLC, fps, opts):
    """One method's video of one clip, with a progress bar over its steps (or segments)."""
    config, graphdef, params = loaded
    T = len(real_THWC)
    kind, settings = comparison_run(
        method,
        opts["plan"],
        anchor="known",
        num_steps=opts["steps"],
        chunk_size=opts["chunk_size"],
        max_anchor_gap_s=opts["max_anchor_gap_s"],
    )
    plan = plan_segments(T, config.data.clip_frames, 0, kind, seed=opts["seed"])
    source_model = codec.encode(real_THWC[0])
    total = plan.num_segments if method == "autoregressive" else opts["steps"]
    bar, tick = progress_bar(total, f"clip {clip} {method}")
    try:
        video, _ = generate_video(
            graphdef, params,
            make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps),
            prediction=config.diffusion.prediction, plan=plan, landmarks_TLC=landmarks_TLC,
            frame_times_T=np.arange(T) / fps, identity=source_model, source_HWC=source_model,
            settings=settings, key=jax.random.key(opts["seed"] + clip), progress=tick,
        )  # fmt: skip
    finally:
        bar.close()
    return codec.decode(video)


def _comparison_video(out, clip, methods, parts, real_THWC, landmarks_TLC, fps, display):
    """source | landmarks | real | each method, side by side, for one sample clip."""
    from data_pipelines.video_writing import write_video

    panels = [
        np.broadcast_to(to_display(real_THWC[:1], display), (len(real_THWC), display, display, 3)),
        render_landmarks(landmarks_TLC, display),
        to_display(real_THWC, display),
    ]
    panels += [to_display(to_unit_range(parts[m][clip]["video_u8"]), display) for m in methods]
    path = os.path.join(out, f"clip{clip}_comparison.mp4")
    write_video(path, np.concatenate(panels, axis=2), fps)
    return os.path.basename(path)


def run_report(
    checkpoint: str,
    out: str,
    *,
    data: str = "",
    frames: int = 256,
    clips: int = 2,
    methods=METHODS,
    plan_kind: str = "contiguous",
    num_steps: int = 20,
    chunk_size: int = 32,
    seed: int = 0,
    max_anchor_gap_s: float = -1.0,
    vae: str = "",
    suite: metric_suite.MetricSuite | None = None,
    sample_clips: int = 1,
    display: int = 128,
    max_parts: int = 0,
    loaded=None,
) -> dict | None:
    """Scores every (method, clip) not already in `out/parts`, then writes the report.

    max_parts: > 0 stops after computing that many new parts (returns None; run again to
    continue). Returns the metrics written to `metrics.json`.
    """
    loaded = loaded or load_sdit_for_inference(checkpoint)
    config = loaded[0]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: expected a subset of {list(METHODS)}, got {list(methods)}")
    if plan_kind not in PLAN_KINDS:
        raise ValueError(f"--plan: expected one of {list(PLAN_KINDS)}, got {plan_kind!r}")
    if frames < 2:
        raise ValueError(f"--frames: expected at least 2, got {frames}")
    if max_anchor_gap_s < 0:  # auto: the run's training window
        max_anchor_gap_s = training_window_s(config)
    codec = frame_codec(config, vae)
    if codec is None:
        raise ValueError(
            f"--vae: the model denoises {config.model.in_channels}-channel latents; give the "
            "diffusers VAE folder they were encoded with"
        )
    suite = suite or metric_suite.build_suite()
    source, video_ids = held_out_clips(config, data, frames, clips)
    opts = dict(plan=plan_kind, steps=num_steps, chunk_size=chunk_size, seed=seed,
                max_anchor_gap_s=float(max_anchor_gap_s))  # fmt: skip
    settings = dict(
        checkpoint=os.path.abspath(checkpoint), data=data or config.data.source,
        frames=frames, clips=clips, methods=list(methods), video_ids=video_ids, vae=vae,
        sample_clips=sample_clips, display=display,
        computed=sorted(k for k in metric_suite.OPTIONAL if k not in suite.skipped), **opts,
    )  # fmt: skip
    report.check_settings(out, settings)
    names = [REFERENCE, *methods, COPY]
    parts = {name: [] for name in names}
    todo = sum(not os.path.exists(report.part_path(out, n, c)) for n in names for c in range(clips))
    from tqdm import tqdm

    overall = tqdm(total=len(names) * clips, initial=len(names) * clips - todo, desc="parts",
                   unit="part", file=sys.stderr, position=0)  # fmt: skip
    computed = 0
    try:
        for clip, video_id in enumerate(video_ids):
            record = source[video_id]
            real_THWC = landmarks_TLC = None
            for name in names:
                path = report.part_path(out, name, clip)
                part = report.load_part(path)
                if part is None:
                    if max_parts and computed >= max_parts:
                        return None
                    if real_THWC is None:
                        real_THWC = to_unit_range(source.read_frames(video_id, np.arange(frames)))
                        landmarks_TLC = record.landmarks_TLC[:frames]
                    part = _compute_part(
                        loaded, codec, suite, name, clip, real_THWC, landmarks_TLC, record.fps,
                        opts, out, sample=clip < sample_clips, display=display,
                    )  # fmt: skip
                    report.save_part(path, part)
                    computed += 1
                    overall.update(1)
                parts[name].append(part)
    finally:
        overall.close()
    metrics = summarize_parts(parts, settings, suite.skipped)
    videos = []
    for clip in range(min(sample_clips, clips)):
        record = source[video_ids[clip]]
        real_THWC = to_unit_range(source.read_frames(video_ids[clip], np.arange(frames)))
        videos.append(
            _comparison_video(out, clip, methods, parts, real_THWC, record.landmarks_TLC[:frames],
                              record.fps, display)
        )  # fmt: skip
    report.write_report(out, metrics, videos)
    _write_study_files(out, metrics)
    return metrics


def _compute_part(loaded, codec, suite, name, clip, real, landmarks, fps, opts, out, *, sample,
                  display):  # fmt: skip
    """One part: the real clip's reference features, or a method's video scored."""
    if name == REFERENCE:
        return metric_suite.reference_clip(suite, real)
    seconds = 0.0
    if name == COPY:
        video = np.broadcast_to(real[:1], real.shape)
    else:
        start = time.perf_counter()
        video = _generate(loaded, codec, name, clip, real, landmarks, fps, opts)
        seconds = time.perf_counter() - start
        if sample:
            write_outputs(os.path.join(out, f"clip{clip}_{name}.mp4"), video, real[0], landmarks,
                          fps, display, real)  # fmt: skip
    part = metric_suite.score_clip(suite, video, real, landmarks)
    part["seconds"] = np.asarray(seconds)
    if sample:
        part["video_u8"] = np.clip(np.round((video + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return part


def summarize_parts(parts: dict, settings: dict, skipped: dict) -> dict:
    """metrics.json's content from the loaded parts (methods in the order they were asked)."""
    references = parts[REFERENCE]
    by_method = {m: ps for m, ps in parts.items() if m != REFERENCE}
    pooled = metric_suite.summarize_suite(by_method, references, skipped)
    seconds = {m: float(sum(float(p["seconds"]) for p in ps)) for m, ps in by_method.items()}
    return dict(settings=settings, seconds=seconds, **pooled)


def _write_study_files(out: str, metrics: dict) -> None:
    """The consistency study's results.json / results.md, as the earlier study command wrote."""
    s = metrics["settings"]
    results = dict(
        checkpoint=s["checkpoint"], frames=s["frames"], clips=s["clips"], plan=s["plan"],
        num_steps=s["steps"], max_anchor_gap_s=s["max_anchor_gap_s"],
        seconds=metrics["seconds"], methods=metrics["methods"],
    )  # fmt: skip
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(f"Self-reenactment of {s['clips']} held-out clips x {s['frames']} frames, "
                f"{s['steps']} DDIM steps, plan {s['plan']}, max anchor gap "
                f"{s['max_anchor_gap_s']} s (0 = true times).\n\n"
                f"{markdown_table(metrics['methods'])}")  # fmt: skip


# ---------------------------------------------------------------------------------- LEO
def evaluate_animator(workdir: str, videos: int = 8, frames: int = 32) -> dict:
    """Self-reconstruction of held-out videos vs copy-source: frame 0 is the source and every
    frame drives it (absolute motion); means over frames 1.."""
    from data_pipelines.frame_pairs import read_videos
    from launch.animate import encode_codes, load_run_params, make_animator_fns, render_codes

    config, graphdef, params = load_run_params(workdir, "animator", "--animator")
    fns = make_animator_fns(graphdef, params)
    real_BTHWC = read_videos(config.data, "test", videos, frames)
    recon_BTHWC = np.stack(
        [render_codes(fns, v[0], encode_codes(fns, v), mode="absolute") for v in real_BTHWC]
    )
    rows = {}
    copy_BTHWC = np.broadcast_to(real_BTHWC[:, :1], real_BTHWC.shape)
    for name, video in (("animator", recon_BTHWC), (COPY, copy_BTHWC)):
        fake = np.asarray(video[:, 1:], np.float32).reshape(-1, *real_BTHWC.shape[2:])
        true = real_BTHWC[:, 1:].reshape(fake.shape)
        rows[name] = dict(
            l1=float(l1_T(fake, true).mean()),
            psnr=float(psnr_T(fake, true).mean()),
            ssim=float(ssim_T(fake, true).mean()),
        )
    return dict(workdir=os.path.abspath(workdir), videos=len(real_BTHWC),
                frames=real_BTHWC.shape[1], **rows)  # fmt: skip


def evaluate_lmdm(workdir: str, sequences: int = 16) -> dict:
    """|delta alpha| statistics of generated motion vs held-out real code windows."""
    from anchored_jax.sampling.leo_motion_generation import delta_statistics, sample_motion
    from data_pipelines.motion_codes import code_windows
    from launch.animate import load_run_params
    from launch.train_lmdm import load_codes

    config, graphdef, params = load_run_params(workdir, "lmdm", "--lmdm")
    length = config.model.length
    windows = code_windows(load_codes(config, "test"), length, length)
    real = windows[np.random.default_rng(0).permutation(len(windows))[:sequences]]
    generated = sample_motion(
        graphdef, params,
        make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps),
        real[:, 0], jax.random.key(config.seed + 2), length=length,
        num_steps=config.diffusion.sample_steps, prediction=config.diffusion.prediction,
    )  # fmt: skip
    r, g = delta_statistics(real), delta_statistics(generated)
    return dict(
        workdir=os.path.abspath(workdir), sequences=len(real),
        real_delta_mean=r["delta_mean"], real_delta_std=r["delta_std"],
        generated_delta_mean=g["delta_mean"], generated_delta_std=g["delta_std"],
    )  # fmt: skip


# ---------------------------------------------------------------------------------- command
def define_flags() -> None:
    """Defines the command-line flags (only when run as a command)."""
    flags.DEFINE_string("checkpoint", None, "sDiT training workdir or exported checkpoint.")
    flags.DEFINE_string(
        "data", "", "Held-out clips: '' (the run's test split) | synthetic | video_dir:ROOT | "
        "frame_dir:ROOT."
    )  # fmt: skip
    flags.DEFINE_integer("frames", 256, "Frames per held-out clip.")
    flags.DEFINE_integer("clips", 2, "Held-out clips to evaluate.")
    flags.DEFINE_list("methods", list(METHODS), "Samplers to compare (copy-source is added).")
    flags.DEFINE_enum("plan", "contiguous", PLAN_KINDS, "Segment plan of anchored/independent.")
    flags.DEFINE_integer("steps", 20, "DDIM steps.")
    flags.DEFINE_integer("chunk_size", 32, "Segments denoised at once.")
    flags.DEFINE_integer("seed", 0, "Noise seed (the same for every method).")
    flags.DEFINE_float(
        "max_anchor_gap", -1.0,
        "Seconds; >0 caps the anchor gap; 0 = true times; -1 = the run's training window.",
    )  # fmt: skip
    flags.DEFINE_string("vae", "", "Latent models: the diffusers VAE folder (default data.vae).")
    flags.DEFINE_string("lpips_weights", "", "LPIPS: BACKBONE,LINEAR state dicts or a folder.")
    flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone.")
    flags.DEFINE_string("inception_weights", "", "FID: Inception-v3 weights file.")
    flags.DEFINE_string("i3d_weights", "", "FVD: I3D weights file.")
    flags.DEFINE_string("identity_weights", "", "CSIM/AED: identity embedder weights file.")
    flags.DEFINE_string("akd_landmarks", "mediapipe", "AKD: landmark extractor; '' = skip AKD.")
    flags.DEFINE_integer("sample_clips", 1, "Clips to write side-by-side videos of.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")
    flags.DEFINE_integer("max_parts", 0, "> 0: stop after that many new parts (rerun resumes).")
    flags.DEFINE_string("animator", "", "LEO animator workdir: self-reconstruction report.")
    flags.DEFINE_string("lmdm", "", "LEO LMDM workdir: generated vs real motion statistics.")
    flags.DEFINE_integer("leo_videos", 8, "LEO: held-out videos / motion sequences.")
    flags.DEFINE_string("sweep", "", "Sweep folder: one table and plot across its variants.")
    flags.DEFINE_string("out", None, "Report folder.")
    flags.DEFINE_string("out_dir", None, "Alias of --out.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    FLAGS = flags.FLAGS
    out = FLAGS.out or FLAGS.out_dir
    try:
        if not out:
            raise ValueError("--out: the report folder is required")
        os.makedirs(out, exist_ok=True)
        if FLAGS.sweep:
            from anchored_jax.evaluation.sweep_report import write_sweep_report

            write_sweep_report(FLAGS.sweep, out)
            print(f"sweep report of {FLAGS.sweep} in {out}")
            return
        if not (FLAGS.checkpoint or FLAGS.animator or FLAGS.lmdm):
            raise ValueError("--checkpoint (or --animator / --lmdm / --sweep) is required")
        metrics = {}
        if FLAGS.checkpoint:
            parse_data(FLAGS.data)  # before the slow loads
            suite = metric_suite.build_suite(
                lpips_weights=FLAGS.lpips_weights, lpips_net=FLAGS.lpips_net,
                inception_weights=FLAGS.inception_weights, i3d_weights=FLAGS.i3d_weights,
                identity_weights=FLAGS.identity_weights, landmarks=FLAGS.akd_landmarks,
            )  # fmt: skip
            metrics = run_report(
                FLAGS.checkpoint, out, data=FLAGS.data, frames=FLAGS.frames, clips=FLAGS.clips,
                methods=FLAGS.methods, plan_kind=FLAGS.plan, num_steps=FLAGS.steps,
                chunk_size=FLAGS.chunk_size, seed=FLAGS.seed,
                max_anchor_gap_s=FLAGS.max_anchor_gap, vae=FLAGS.vae, suite=suite,
                sample_clips=FLAGS.sample_clips, display=FLAGS.display_size,
                max_parts=FLAGS.max_parts,
            )  # fmt: skip
            if metrics is None:
                print(f"stopped after {FLAGS.max_parts} new parts; run again to continue")
                return
        leo = {}
        if FLAGS.animator:
            leo["animator"] = evaluate_animator(FLAGS.animator, FLAGS.leo_videos)
        if FLAGS.lmdm:
            leo["lmdm"] = evaluate_lmdm(FLAGS.lmdm, FLAGS.leo_videos)
        if leo:
            previous = os.path.join(out, "metrics.json")
            if not metrics and os.path.exists(previous):  # keep a checkpoint report already there
                with open(previous) as f:
                    metrics = json.load(f)
            metrics["leo"] = leo
            report.write_report(out, metrics, _existing_videos(out))
    except (ValueError, OSError) as e:  # bad flags, checkpoints, data folders, weights
        sys.exit(f"error: {e}")
    print(open(os.path.join(out, "report.md")).read())
    print(f"files in {out}")


def _existing_videos(out: str) -> list[str]:
    return sorted(f for f in os.listdir(out) if f.endswith("_comparison.mp4"))


if __name__ == "__main__":
    define_flags()
    app.run(main)
