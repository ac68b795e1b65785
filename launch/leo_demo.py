r"""LEO's demo: one first frame, a long video by both long-generation methods, an edited first
frame re-animated with the same motion, and a report of what the videos show.

  python -m launch.leo_demo --animator runs/animator_tiny --lmdm runs/lmdm_tiny \
      --first-frame synthetic:0 --frames 1024 --out runs/leo_demo

(`make leo-demo` trains both models first, or reuses them.) `--first-frame synthetic:<id>` is
a held-out video of the LMDM's data: its real frames and real motion codes are shown beside
the generated ones. An image path works too (no real panels then). Writes to `--out`:

  long_video.mp4            labelled panels, one per video: [real video | real codes rendered |]
                            chain (LEO) | anchored, all from the same first frame
  long_video_frames.png     those panels at frames 0, 1, 15, 16, 64, 256, 512 and the last
  edited.mp4                the anchored motion on the first frame | on the edited first frame
  edited_frames.png         (`--edit glasses` draws dark glasses from the face's landmarks; or
                            pass an edited image of the same size)
  motion_norm.png           ||a_t|| and ||a_t - a_1|| over time: real codes and both methods,
                            from the first codes of `--sequences` held-out videos
  drift_vs_distance.png     face-region colour drift from frame 0, by distance (per video)
  sharpness_vs_distance.png frame sharpness over frame 0's, by distance (per video)
  report.json, report.md    the code statistics against real codes, the rendered videos'
                            drift, sharpness and seam ratio, the edit's numbers, and timings

Frames are the first frame moved by each code in absolute mode (frame 0 is the first frame's
own reconstruction); the edited first frame is moved in relative mode (its own pose plus the
motion). The videos are held in memory (1024 frames of 64² are 50 MB each), so `--frames` is
at most 4096; `launch.generate` streams longer videos.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import flags, logging  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from anchored_jax.evaluation.frame_strip import write_frame_strip  # noqa: E402
from anchored_jax.evaluation.keypoint_metrics import landmark_extractor  # noqa: E402
from anchored_jax.evaluation.leo_plots import write_distance_plot, write_norm_plot  # noqa: E402
from anchored_jax.evaluation.leo_video_metrics import (  # noqa: E402
    block_owner_T,
    edit_summary,
    video_summary,
)
from anchored_jax.pipelines import leo  # noqa: E402
from anchored_jax.pipelines.checkpoints import load_model  # noqa: E402
from anchored_jax.pipelines.command_line import run  # noqa: E402
from anchored_jax.sampling.leo_motion_statistics import relative_error_text  # noqa: E402
from anchored_jax.training.sample_grid import to_uint8  # noqa: E402
from data_pipelines.image_edits import EDITS, draw_glasses  # noqa: E402
from data_pipelines.inference_inputs import (  # noqa: E402
    SYNTHETIC_PREFIX,
    InputError,
    check_frames,
    load_source_image,
    synthetic_id,
)
from data_pipelines.landmark_layouts import facemesh_to_ibug68  # noqa: E402
from data_pipelines.lmdm_codes import held_out_frames, load_codes  # noqa: E402
from data_pipelines.output_videos import to_display  # noqa: E402
from data_pipelines.video_writing import VideoWriter, check_output_video  # noqa: E402

MAX_FRAMES = 4096
LABEL_PX = 14  # height of the caption strip above each panel
GRID_FRAMES = (0, 1, 15, 16, 64, 256, 512)  # plus the last; 15 -> 16 crosses a chunk join


def _captioned(frames_u8: np.ndarray, caption: str) -> np.ndarray:
    """uint8 panels `[T, S, S, 3]` with a caption strip on top: `[T, S + LABEL_PX, S, 3]`."""
    strip = Image.new("RGB", (frames_u8.shape[2], LABEL_PX), (255, 255, 255))
    ImageDraw.Draw(strip).text((3, 1), caption, fill=(0, 0, 0))
    strip_u8 = np.broadcast_to(np.asarray(strip), (len(frames_u8), *np.asarray(strip).shape))
    return np.concatenate([strip_u8, frames_u8], axis=1)


def write_panel_video(path: str, videos: dict, fps: float, display: int, chunk: int = 64):
    """The videos (`name -> [T, H, W, 3]` in [-1, 1]) side by side, captioned, in chunks."""
    num_frames = len(next(iter(videos.values())))
    with VideoWriter(path, fps) as writer:
        for start in range(0, num_frames, chunk):
            panels = [
                _captioned(to_display(v[start : start + chunk], display), name)
                for name, v in videos.items()
            ]
            writer.append(np.concatenate(panels, axis=2))


def tracked_landmarks(extractor, frames_THWC) -> tuple[np.ndarray, float]:
    """iBUG-68 landmarks `[T, 68, 2]` of a video and the share of frames with a face found.

    FaceMesh's 468 points are mapped to iBUG-68; a frame without a face takes the landmarks of
    the nearest earlier one (the first found, before any); a video without any face gets the
    whole frame as its box, so its measures cover the frame.
    """
    points = np.asarray(extractor(to_uint8(frames_THWC)), np.float32)[..., :2]
    if points.shape[1] == 468:
        depth = np.zeros_like(points[..., :1])
        points = facemesh_to_ibug68(np.concatenate([points, depth], axis=-1))[..., :2]
    found = np.isfinite(points).all(axis=(1, 2))
    if not found.any():
        corners = np.linspace(0.0, 1.0, 68, dtype=np.float32)
        return np.broadcast_to(np.stack([corners, corners], -1), points.shape).copy(), 0.0
    source_T = np.maximum.accumulate(np.where(found, np.arange(len(points)), -1))
    source_T[source_T < 0] = np.argmax(found)
    return points[source_T], float(found.mean())


def _first_frame(spec: str, animator, lmdm, num_frames: int):
    """(first frame, real frames or None, real codes or None, landmark extractor kind)."""
    if spec.startswith(SYNTHETIC_PREFIX):
        video_id = synthetic_id(spec, "--first-frame")
        frames, _ = held_out_frames(lmdm[0], video_id, num_frames)
        if frames.shape[1] != animator[0].data.image_size:
            raise InputError(
                f"--lmdm: its data.image_size ({frames.shape[1]}) differs from the animator's "
                f"({animator[0].data.image_size})"
            )
        real_codes = load_codes(lmdm[0], "test")[video_id, :num_frames]
        if len(frames) < num_frames:  # a shorter held-out video: no real panel
            return frames[0], None, None, "synthetic"
        return frames[0], frames, real_codes, "synthetic"
    return load_source_image(spec, animator[0], "--first-frame"), None, None, "mediapipe"


def _edited_frame(edit: str, first_HWC, landmarks_of, animator_config):
    if edit in EDITS:  # glasses
        points, found = tracked_landmarks(landmarks_of, first_HWC[None])
        if not found:
            raise InputError("--edit glasses: no face found in the first frame to draw them on")
        return draw_glasses(first_HWC, points[0])
    return load_source_image(edit, animator_config, "--edit")


def run_demo(animator_dir: str, lmdm_dir: str, out: str, *, first_frame="synthetic:0",
             num_frames=1024, sequences=32, edit="glasses", seed=0, steps=0, guidance=None,
             fps=25.0, display=128, landmarks_of=None) -> dict:  # fmt: skip
    """Writes the demo's files to `out`; returns the report and the paths.

    landmarks_of: `frames_NHWC uint8 -> [N, 68, 2]` for the report; None = the synthetic
    faces' regressor for a synthetic first frame, FaceMesh for an image.
    """
    check_frames(num_frames)
    if num_frames > MAX_FRAMES:
        raise InputError(
            f"--frames: expected at most {MAX_FRAMES} (the demo holds its videos in memory; "
            f"launch.generate streams longer ones), got {num_frames}"
        )
    if not out:
        raise InputError("--out: expected an output directory")
    timings = {}
    start = time.perf_counter()
    animator = load_model(animator_dir, "animator", "--animator")
    lmdm = load_model(lmdm_dir, "lmdm", "--lmdm")
    leo.check_pair(animator, lmdm)
    data = lmdm[0].data
    if data.source == "synthetic":  # known before any code is extracted
        held_out = data.num_test_identities * data.videos_per_identity
        if not 1 <= sequences <= held_out:
            raise InputError(
                f"--sequences: expected 1..{held_out} (held-out videos), got {sequences}"
            )
    length = lmdm[0].model.length
    first_HWC, real_THWC, real_codes_TM, landmark_kind = _first_frame(
        first_frame, animator, lmdm, num_frames
    )
    os.makedirs(out, exist_ok=True)
    check_output_video(os.path.join(out, "long_video.mp4"))
    extractor = landmarks_of or landmark_extractor(landmark_kind)
    if isinstance(extractor, str):
        raise InputError(f"--first-frame: no landmark detector for the report: {extractor}")
    edited_HWC = _edited_frame(edit, first_HWC, extractor, animator[0])

    # 1. Code statistics over `sequences` held-out videos, both methods against real codes.
    results, codes = leo.compare_methods(
        lmdm, load_codes(lmdm[0], "test"), num_frames=num_frames, sequences=sequences,
        seed=seed, steps=steps, guidance=guidance,
    )  # fmt: skip
    write_norm_plot(
        os.path.join(out, "motion_norm.png"), codes,
        f"LMDM motion codes over {num_frames} frames, {sequences} held-out first codes",
    )  # fmt: skip
    timings["code_statistics_s"] = time.perf_counter() - start

    # 2. One long video per method from this first frame (and the real motion, when known).
    fns = leo.animator_fns(animator)
    alpha1_1M = leo.first_codes(fns, first_HWC[None])
    tick = time.perf_counter()
    motion = {
        method: leo.generate_codes(
            lmdm,
            alpha1_1M,
            method=method,
            num_frames=num_frames,
            seed=seed,
            steps=steps,
            guidance=guidance,
        )[0]
        for method in leo.METHODS
    }
    timings["motion_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    videos = {} if real_THWC is None else {"real video": real_THWC}
    rendered = {} if real_codes_TM is None else {"real codes": real_codes_TM}
    rendered.update({"chain (LEO)": motion["chain"], "anchored": motion["anchored"]})
    for name, codes_TM in rendered.items():
        videos[name] = leo.render_codes(fns, first_HWC, codes_TM, mode="absolute")
    edited_THWC = leo.render_codes(fns, edited_HWC, motion["anchored"], mode="relative")
    timings["render_s"] = time.perf_counter() - tick

    # 3. What the rendered videos show.
    tick = time.perf_counter()
    tracked = {name: tracked_landmarks(extractor, v) for name, v in videos.items()}
    landmarks = {name: points for name, (points, _) in tracked.items()}
    summaries = {
        name: dict(video_summary(v, landmarks[name], length), face_found=tracked[name][1])
        for name, v in videos.items()
    }
    edited_landmarks, _ = tracked_landmarks(extractor, edited_THWC)
    edit_numbers = edit_summary(
        videos["anchored"], edited_THWC, landmarks["anchored"], edited_landmarks
    )
    timings["measure_s"] = time.perf_counter() - tick

    # 4. Files.
    picks = sorted({t for t in GRID_FRAMES if t < num_frames} | {num_frames - 1})
    paths = {name: os.path.join(out, name) for name in (
        "long_video.mp4", "long_video_frames.png", "edited.mp4", "edited_frames.png",
        "drift_vs_distance.png", "sharpness_vs_distance.png", "report.json", "report.md",
    )}  # fmt: skip
    write_panel_video(paths["long_video.mp4"], videos, fps, display)
    owner_T = block_owner_T(num_frames, length)  # column titles: the chunk each frame is in
    strip = lambda path, rows, title: write_frame_strip(  # noqa: E731
        path, {k: to_uint8(v) for k, v in rows.items()}, picks, owner_T, title
    )
    strip(paths["long_video_frames.png"], videos, f"{num_frames} frames from {first_frame}")
    pair = {"first frame": videos["anchored"], "edited first frame": edited_THWC}
    write_panel_video(paths["edited.mp4"], pair, fps, display)
    strip(paths["edited_frames.png"], pair, "the anchored motion on the first frame and its edit")
    for measure, ylabel in (("drift", "face colour drift from frame 0"),
                            ("sharpness", "sharpness / frame 0's")):  # fmt: skip
        write_distance_plot(
            paths[f"{measure}_vs_distance.png"], summaries, measure, ylabel=ylabel,
            title=f"{measure} of the rendered frames by distance from the first frame",
        )  # fmt: skip
    timings["total_s"] = time.perf_counter() - start
    report = dict(
        animator=os.path.abspath(animator_dir), lmdm=os.path.abspath(lmdm_dir),
        first_frame=first_frame, frames=num_frames, sequences=sequences, seed=seed,
        segment_length=length, code_statistics=results,
        rendered={k: {m: v for m, v in s.items() if m != "curves"} for k, s in summaries.items()},
        curves={k: s["curves"] for k, s in summaries.items()}, edit=edit_numbers,
        timings=timings,
    )  # fmt: skip
    with open(paths["report.json"], "w") as f:
        json.dump(report, f, indent=1)
    with open(paths["report.md"], "w") as f:
        f.write(report_markdown(report))
    paths["motion_norm.png"] = os.path.join(out, "motion_norm.png")
    return dict(report=report, paths=sorted(paths.values()))


def report_markdown(report: dict) -> str:
    """The report's tables, as the README and docs quote them."""
    lines = [f"# LEO demo: {report['frames']} frames from {report['first_frame']}", ""]
    vs_real = report["code_statistics"].get("vs_real")
    if vs_real:
        lines += [
            f"Motion codes, {report['sequences']} held-out first codes, against the real codes "
            "of the same videos (relative error, and its 90% interval from a paired bootstrap "
            "over the videos):", "",
            "| codes | \\|Δα\\| mean | \\|Δα\\| std | drift mean | drift std | join ÷ within "
            "| saw-tooth |", "|---|---|---|---|---|---|---|",
        ]  # fmt: skip
        for name, r in vs_real.items():
            cells = [
                f"{r[k]:.4f}" + ("" if name == "real" else f" ({relative_error_text(r, k)})")
                for k in ("delta_mean", "delta_std", "drift_mean", "drift_std")
            ]
            lines.append(
                f"| {name} | {' | '.join(cells)} | {r['join_ratio']:.2f} | {r['sawtooth']:.3f} |"
            )
        lines.append("")
    lines += [
        "Rendered frames (drift: face colour statistics from frame 0's; sharpness: over frame "
        "0's; seam: frame change where blocks of L-1 frames meet ÷ within):", "",
        "| video | drift mean | sharpness mean | seam ratio | frames with a face found |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for name, r in report["rendered"].items():
        seam = "—" if r["seam_ratio"] is None else f"{r['seam_ratio']:.2f}"
        lines.append(
            f"| {name} | {r['drift_mean']:.4f} | {r['sharpness_mean']:.3f} | {seam} | "
            f"{100 * r['face_found']:.0f}% |"
        )
    e = report["edit"]
    lines += [
        "",
        f"Edited first frame, re-animated with the anchored motion: landmarks "
        f"{e['motion_px']:.2f} px from the unedited render's (frame 0: "
        f"{e['motion_px_frame0']:.2f} px); the edit's change kept at {e['edit_kept']:.2f} of "
        "frame 0's.",
        "",
        "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def define_flags() -> None:
    flags.DEFINE_string("animator", "runs/animator_tiny", "Animator workdir or LIA import.")
    flags.DEFINE_string("lmdm", "runs/lmdm_tiny", "LMDM training workdir.")
    flags.DEFINE_string(
        "first-frame", "synthetic:0", "synthetic:<held-out video of the LMDM's data>, or an image."
    )
    flags.DEFINE_integer("frames", 1024, f"Frames to generate, frame 0 included (<= {MAX_FRAMES}).")
    flags.DEFINE_integer(
        "sequences", 32, "Held-out first codes for the code statistics (<= the LMDM's test videos)."
    )
    flags.DEFINE_string("edit", "glasses", "glasses, or an edited first-frame image.")
    flags.DEFINE_integer("steps", 0, "DDIM steps; 0 = the LMDM's diffusion.sample_steps.")
    flags.DEFINE_integer("seed", 0, "Noise seed.")
    flags.DEFINE_float("guidance", None, "CFG scale; default: the LMDM's diffusion.guidance_scale.")
    flags.DEFINE_float("fps", 25.0, "Frame rate of the written videos.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")
    flags.DEFINE_string("out", "runs/leo_demo", "Output directory.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    FLAGS = flags.FLAGS
    try:
        check_frames(FLAGS.frames)
        for name, lowest in (("sequences", 1), ("steps", 0), ("display_size", 8)):
            if getattr(FLAGS, name) < lowest:
                raise InputError(f"--{name}: expected >= {lowest}, got {getattr(FLAGS, name)}")
        if FLAGS.guidance is not None and not 0.0 <= FLAGS.guidance <= 10.0:
            raise InputError(f"--guidance: expected a scale in [0, 10], got {FLAGS.guidance}")
        if FLAGS.fps <= 0:
            raise InputError(f"--fps: expected > 0, got {FLAGS.fps}")
        result = run_demo(
            FLAGS.animator, FLAGS.lmdm, FLAGS.out, first_frame=FLAGS["first-frame"].value,
            num_frames=FLAGS.frames, sequences=FLAGS.sequences, edit=FLAGS.edit,
            seed=FLAGS.seed, steps=FLAGS.steps, guidance=FLAGS.guidance, fps=FLAGS.fps,
            display=FLAGS.display_size,
        )  # fmt: skip
    except (ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(report_markdown(result["report"]))
    print("wrote " + ", ".join(result["paths"]))


if __name__ == "__main__":
    define_flags()
    run(main)
