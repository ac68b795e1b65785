r"""The consistency study: anchored vs independent vs autoregressive vs copy-source, by distance.

  python -m launch.evaluate --checkpoint runs/sdit_tiny --frames 256 --clips 2 \
      --out_dir runs/sdit_tiny/consistency

Self-reenactment of held-out synthetic clips (identities and motions never seen in training):
the source is the clip's frame 0, the driving signal its landmarks, and ground truth its
frames. Writes `results.json`, `results.md` (the table), `psnr_vs_distance.png`,
`drift_vs_distance.png` and, for the first clip, each method's side-by-side video.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from anchored_jax.diffusion.schedules import make_schedule  # noqa: E402
from anchored_jax.evaluation.consistency_study import (  # noqa: E402
    frame_metrics,
    markdown_table,
    summarize,
)
from anchored_jax.evaluation.line_plot import write_line_plot  # noqa: E402
from anchored_jax.sampling.sampler_settings import METHODS, SamplerSettings  # noqa: E402
from anchored_jax.sampling.segment_plan import PLAN_KINDS, plan_segments  # noqa: E402
from anchored_jax.sampling.video_generation import generate_video, training_window_s  # noqa: E402
from anchored_jax.training.inference_checkpoint import load_sdit_for_inference  # noqa: E402
from launch.reenact import held_out_video, progress_bar, to_unit_range, write_outputs  # noqa: E402


def run_study(
    checkpoint: str,
    out_dir: str,
    *,
    frames: int = 256,
    clips: int = 2,
    methods=METHODS,
    plan_kind: str = "contiguous",
    num_steps: int = 20,
    chunk_size: int = 32,
    seed: int = 0,
    max_anchor_gap_s: float = 0.0,
    loaded=None,
    videos: bool = True,
) -> dict:
    """Generates every clip with every method, scores them and writes the study's files."""
    config, graphdef, params = loaded or load_sdit_for_inference(checkpoint)
    if max_anchor_gap_s < 0:  # auto: the run's training window
        max_anchor_gap_s = training_window_s(config)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: expected a subset of {list(METHODS)}, got {unknown}")
    os.makedirs(out_dir, exist_ok=True)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    K = config.data.clip_frames
    source_videos = held_out_video(config, 0, frames)
    if clips > len(source_videos):
        raise ValueError(f"--clips: only {len(source_videos)} held-out videos, got {clips}")
    per_method = {m: [] for m in (*methods, "copy_source")}
    timings = {m: 0.0 for m in methods}
    for clip in range(clips):
        record = source_videos[clip]
        real_THWC = to_unit_range(source_videos.read_frames(clip, np.arange(frames)))
        landmarks_TLC = record.landmarks_TLC
        copy = np.broadcast_to(real_THWC[:1], real_THWC.shape)
        per_method["copy_source"].append(frame_metrics(copy, real_THWC, landmarks_TLC))
        for method in methods:
            # The autoregressive chain hands frames on in time order: contiguous only.
            kind = "contiguous" if method == "autoregressive" else plan_kind
            plan = plan_segments(frames, K, 0, kind, seed=seed)
            settings = SamplerSettings(
                method=method,
                anchor="known" if method != "independent" else "generated",
                num_steps=num_steps,
                chunk_size=chunk_size,
                max_anchor_gap_s=max_anchor_gap_s,
            )
            total = plan.num_segments if method == "autoregressive" else num_steps
            bar, tick = progress_bar(total, f"clip {clip} {method}")
            start = time.perf_counter()
            try:
                video_THWC, _ = generate_video(
                    graphdef, params, schedule,
                    prediction=config.diffusion.prediction, plan=plan,
                    landmarks_TLC=landmarks_TLC, frame_times_T=np.arange(frames) / record.fps,
                    identity=real_THWC[0], source_HWC=real_THWC[0], settings=settings,
                    key=jax.random.key(seed + clip), progress=tick,
                )  # fmt: skip
            finally:
                bar.close()
            timings[method] += time.perf_counter() - start
            per_method[method].append(frame_metrics(video_THWC, real_THWC, landmarks_TLC))
            if videos and clip == 0:
                write_outputs(
                    os.path.join(out_dir, f"clip0_{method}.mp4"), video_THWC, real_THWC[0],
                    landmarks_TLC, record.fps, 128, real_THWC,
                )  # fmt: skip
    summary = summarize(per_method)
    results = dict(
        checkpoint=os.path.abspath(checkpoint),
        frames=frames,
        clips=clips,
        plan=plan_kind,
        num_steps=num_steps,
        max_anchor_gap_s=max_anchor_gap_s,
        seconds=timings,
        methods=summary,
    )
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    table = markdown_table(summary)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"Self-reenactment of {clips} held-out clips x {frames} frames, {num_steps} DDIM "
                f"steps, plan {plan_kind}, max anchor gap {max_anchor_gap_s} s (0 = true times)."
                f"\n\n{table}")  # fmt: skip
    for metric, label in (("psnr", "PSNR (dB)"), ("drift", "face colour drift")):
        series = {m: tuple(map(np.asarray, r["curves"][metric])) for m, r in summary.items()}
        write_line_plot(
            os.path.join(out_dir, f"{metric}_vs_distance.png"),
            series,
            title=f"{label} vs distance from the anchor ({clips} clips x {frames} frames)",
            xlabel="distance from the anchor (frames)",
            ylabel=label,
        )
    return results


def define_flags() -> None:
    """Defines the command-line flags (only when run as a command)."""
    flags.DEFINE_string("checkpoint", None, "Training workdir or exported checkpoint.")
    flags.DEFINE_integer("frames", 256, "Frames per held-out clip.")
    flags.DEFINE_integer("clips", 2, "Held-out clips (synthetic test videos 0..clips-1).")
    flags.DEFINE_list("methods", list(METHODS), "Samplers to compare.")
    flags.DEFINE_enum("plan", "contiguous", PLAN_KINDS, "Segment plan of anchored/independent.")
    flags.DEFINE_integer("steps", 20, "DDIM steps.")
    flags.DEFINE_integer("chunk_size", 32, "Segments denoised at once.")
    flags.DEFINE_integer("seed", 0, "Noise seed (the same for every method).")
    flags.DEFINE_float(
        "max_anchor_gap",
        -1.0,
        "Seconds; >0 caps the anchor gap; 0 = true times; -1 = the run's training window.",
    )
    flags.DEFINE_string("out_dir", "consistency", "Where results and plots go.")


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    if not FLAGS.checkpoint:
        sys.exit("error: --checkpoint is required")
    try:
        results = run_study(
            FLAGS.checkpoint, FLAGS.out_dir, frames=FLAGS.frames, clips=FLAGS.clips,
            methods=FLAGS.methods, plan_kind=FLAGS.plan, num_steps=FLAGS.steps,
            chunk_size=FLAGS.chunk_size, seed=FLAGS.seed, max_anchor_gap_s=FLAGS.max_anchor_gap,
        )  # fmt: skip
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(markdown_table(results["methods"]))
    print(f"seconds per method: {results['seconds']}; files in {FLAGS.out_dir}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
