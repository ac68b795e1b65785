r"""LEO's long generation: first frame -> alpha_1 -> LMDM motion codes -> animated frames.

  python -m launch.generate --animator runs/animator_tiny --lmdm runs/lmdm_tiny \
      --first-frame face.png --frames 1024 --method anchored --out out.mp4
  python -m launch.generate --lmdm runs/lmdm_tiny --compare --frames 1024 \
      --out docs/figures/leo_motion_norm.png

The animator's encoder gives the first frame's motion code alpha_1; the LMDM generates
`--frames` codes from it, by LEO's chaining (`chain`: each chunk of L codes starts at the
previous chunk's last code, one chunk after another) or by the anchored LMDM (`anchored`:
segments that all hold alpha_1 as their step 0, denoised together in one batched loop; see
anchored_jax/sampling/leo_anchored_motion.py); the animator renders the first frame moved by
each code (absolute codes: frame 0 is the first frame's own reconstruction). Writes `--out`,
`<out>_codes.npz` (codes [1, T, M], which `launch.animate --driving` takes, e.g. to re-animate
an edited first frame with the same motion) and `<out>_motion_norm.png` (||alpha_t|| over time).

`--compare` needs no animator: it runs both methods from the first codes of `--sequences`
held-out videos of the LMDM's own data, and writes the norm-over-time plot of both to `--out`
and their `motion_norm_statistics` and join statistics to `<out>.json`. `--first_sequence K`
starts at held-out video K: on synthetic faces, videos past the run's own test count are made
(and their codes cached), so a comparison can use videos no choice of the run has read.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags, logging  # noqa: E402

from anchored_jax.evaluation.leo_plots import write_norm_plot  # noqa: E402
from anchored_jax.pipelines import leo  # noqa: E402
from anchored_jax.pipelines.checkpoints import load_model  # noqa: E402
from anchored_jax.pipelines.command_line import run  # noqa: E402
from anchored_jax.sampling.leo_motion_generation import motion_norm_statistics  # noqa: E402
from anchored_jax.sampling.leo_motion_statistics import relative_error_text  # noqa: E402
from data_pipelines.inference_inputs import InputError, check_frames, load_source_image  # noqa: E402
from data_pipelines.lmdm_codes import load_codes  # noqa: E402
from data_pipelines.motion_codes import write_code_file  # noqa: E402
from data_pipelines.output_videos import PanelVideos, to_display  # noqa: E402
from data_pipelines.synthetic_faces import TEST_IDENTITY_OFFSET  # noqa: E402
from data_pipelines.video_writing import check_output_video  # noqa: E402

METHODS = leo.METHODS
REPORTED = ("delta_mean", "delta_std", "drift_mean", "drift_std")  # --compare vs real codes
generate_codes = leo.generate_codes


def compared_codes(config, split: str, first: int, count: int):
    """Codes `[N - first, T, M]` of a split's videos from video `first` on. The synthetic faces'
    held-out split grows to hold videos `first .. first + count - 1` (held-out identity i is
    the same face whatever the count), so videos the LMDM's own evaluation never read can be
    compared; any other source has the videos it has."""
    data = config.data
    if split == "test" and data.source == "synthetic":
        identities = -(-(first + count) // data.videos_per_identity)
        if identities > TEST_IDENTITY_OFFSET:
            raise ValueError(
                f"--first_sequence {first} + --sequences {count}: expected at most "
                f"{TEST_IDENTITY_OFFSET * data.videos_per_identity} synthetic held-out videos"
            )
        if identities > data.num_test_identities:
            # Codes are extracted (and cached) for every held-out video up to the last one.
            logging.warning("extracting the codes of %d held-out videos", first + count)
            config = config.copy_and_resolve_references()
            config.data.num_test_identities = identities
    codes = load_codes(config, split)
    if first >= len(codes):
        raise ValueError(f"--first_sequence: expected < {len(codes)} ({split} videos), got {first}")
    return codes[first:]


def compare(lmdm, out: str, *, num_frames: int, sequences: int, seed=0, steps=0,
            guidance=None, split="test", first_sequence=0) -> dict:  # fmt: skip
    """Both methods from the first codes of a split's videos `first_sequence ..
    first_sequence + sequences - 1` (held-out by default): the plot at `out`, statistics in
    `<out>.json`."""
    results, codes = leo.compare_methods(
        lmdm, compared_codes(lmdm[0], split, first_sequence, sequences),
        num_frames=num_frames, sequences=sequences, seed=seed, steps=steps, guidance=guidance,
    )  # fmt: skip
    results["videos"] = [first_sequence, first_sequence + sequences]  # [first, end)
    videos = f"{split} videos {first_sequence}..{first_sequence + sequences - 1}"
    title = f"LMDM motion norm over {num_frames} frames, first codes of {videos}"
    write_norm_plot(out, codes, title)
    with open(f"{os.path.splitext(out)[0]}.json", "w") as f:
        json.dump(results, f, indent=1)
    return results


def generate(animator: str, lmdm_dir: str, first_frame: str, out: str, *, method: str,
             num_frames: int, seed=0, steps=0, guidance=None, chunk_size=32, devices=0,
             batch_size=16, display=128, fps=25.0, loaded=None) -> dict:  # fmt: skip
    """Image -> alpha_1 -> codes -> frames, written as each batch is rendered; returns the
    paths and the codes."""
    if method not in METHODS:
        raise InputError(f"--method: expected one of {list(METHODS)}, got {method!r}")
    check_frames(num_frames)
    leo.check_batch_size(batch_size)
    check_output_video(out)
    anim, lmdm = loaded or (
        load_model(animator, "animator", "--animator"),
        load_model(lmdm_dir, "lmdm", "--lmdm"),
    )
    leo.check_pair(anim, lmdm)
    first_HWC = load_source_image(first_frame, anim[0], "--first-frame")
    fns = leo.animator_fns(anim)
    alpha1_1M = leo.first_codes(fns, first_HWC[None])
    start = time.perf_counter()
    from tqdm import tqdm

    # anchored: one tick per solver step; chain runs its chunks in one scan, ticked at the end.
    bar = tqdm(total=steps or lmdm[0].diffusion.sample_steps, desc=f"{method} motion",
               unit="step", file=sys.stderr)  # fmt: skip
    try:
        codes_1TM = leo.generate_codes(
            lmdm, alpha1_1M, method=method, num_frames=num_frames, seed=seed, steps=steps,
            guidance=guidance, chunk_size=chunk_size, devices=devices,
            progress=lambda i: bar.update(1),
        )  # fmt: skip
        bar.update(bar.total - bar.n)
    finally:
        bar.close()
    motion_seconds = time.perf_counter() - start
    bar = tqdm(total=num_frames, desc="render", unit="frame", file=sys.stderr)
    first_u8 = to_display(first_HWC[None], display)
    with PanelVideos(out, fps, display) as videos:
        try:
            for chunk in leo.stream_render_codes(
                fns, first_HWC, codes_1TM[0], mode="absolute", batch_size=batch_size
            ):
                videos.append(chunk, [first_u8])
                bar.update(len(chunk))
        finally:
            bar.close()
        paths = videos.close()
    stem = os.path.splitext(out)[0]
    write_code_file(f"{stem}_codes.npz", codes_1TM)
    write_norm_plot(f"{stem}_motion_norm.png", {method: codes_1TM}, f"{method}: motion norm")
    paths += [f"{stem}_codes.npz", f"{stem}_motion_norm.png"]
    return dict(paths=paths, codes=codes_1TM, motion_seconds=motion_seconds,
                statistics=motion_norm_statistics(codes_1TM))  # fmt: skip


def define_flags() -> None:
    flags.DEFINE_string("animator", None, "Animator workdir or imported LIA directory.")
    flags.DEFINE_string("lmdm", None, "LMDM training workdir.")
    flags.DEFINE_string("first-frame", None, "First-frame image, or synthetic:<held-out id>.")
    flags.DEFINE_integer("frames", 1024, "Frames (motion codes) to generate, frame 0 included.")
    flags.DEFINE_string("method", "anchored", "chain | anchored.")
    flags.DEFINE_bool("compare", False, "Plot both methods' motion norm (no animator needed).")
    flags.DEFINE_integer("sequences", 4, "--compare: held-out first codes to start from.")
    flags.DEFINE_integer(
        "first_sequence", 0, "--compare: the first of the split's videos to start from (synthetic"
        " held-out videos past the LMDM's own test count are made as needed)."
    )  # fmt: skip
    flags.DEFINE_integer("steps", 0, "DDIM steps; 0 = the LMDM's diffusion.sample_steps.")
    flags.DEFINE_float("guidance", None, "CFG scale; default: the LMDM's diffusion.guidance_scale.")
    flags.DEFINE_enum("split", "test", ["test", "train"], "--compare: whose videos' codes.")
    flags.DEFINE_integer("chunk_size", 32, "anchored: segments per model call.")
    flags.DEFINE_integer("devices", 0, "anchored: devices to split segments over; 0 = all.")
    flags.DEFINE_integer("seed", 0, "Noise seed.")
    flags.DEFINE_integer("batch_size", 16, "Frames rendered per generator call.")
    flags.DEFINE_float("fps", 25.0, "Frame rate of the written video.")
    flags.DEFINE_string("out", "generate.mp4", "Output mp4 (or, with --compare, png) path.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # keeps orbax's restore chatter off the terminal
    FLAGS = flags.FLAGS
    try:
        if not FLAGS.lmdm:
            raise InputError("--lmdm is required")
        check_frames(FLAGS.frames)
        for name, lowest in (("sequences", 1), ("first_sequence", 0), ("steps", 0),
                             ("chunk_size", 1), ("devices", 0), ("batch_size", 1),
                             ("display_size", 8)):  # fmt: skip
            if getattr(FLAGS, name) < lowest:
                raise InputError(f"--{name}: expected >= {lowest}, got {getattr(FLAGS, name)}")
        if FLAGS.method not in METHODS:
            raise InputError(f"--method: expected one of {list(METHODS)}, got {FLAGS.method!r}")
        if FLAGS.guidance is not None and not 0.0 <= FLAGS.guidance <= 10.0:
            raise InputError(f"--guidance: expected a scale in [0, 10], got {FLAGS.guidance}")
        if FLAGS.compare:
            if not FLAGS.out.lower().endswith(".png"):
                raise InputError(f"--out {FLAGS.out}: --compare writes a .png plot")
            lmdm = load_model(FLAGS.lmdm, "lmdm", "--lmdm")
            results = compare(
                lmdm, FLAGS.out, num_frames=FLAGS.frames, sequences=FLAGS.sequences,
                seed=FLAGS.seed, steps=FLAGS.steps, guidance=FLAGS.guidance, split=FLAGS.split,
                first_sequence=FLAGS.first_sequence,
            )  # fmt: skip
            for method in METHODS:
                r = results[method]
                norms = [round(v, 2) for v in r["norm_mean"]]
                print(
                    f"{method}: {r['seconds']:.1f} s, norm by window {norms}, join |d| "
                    f"{r['join_delta_mean']:.4f} within {r['within_delta_mean']:.4f}"
                )
            for name, r in results.get("vs_real", {}).items():
                errors = "" if name == "real" else (
                    " (vs real, 90% intervals: "
                    + ", ".join(relative_error_text(r, k) for k in REPORTED)
                    + ")"
                )  # fmt: skip
                print(
                    f"{name}: |d| mean {r['delta_mean']:.4f} std {r['delta_std']:.4f}, drift "
                    f"|a_t - a_1| mean {r['drift_mean']:.3f} std {r['drift_std']:.3f}{errors}; "
                    f"join/within {r['join_ratio']:.2f}, saw-tooth {r['sawtooth']:.3f}"
                )
            print(f"wrote {FLAGS.out}")
            return
        first_frame = FLAGS["first-frame"].value
        if not FLAGS.animator or not first_frame:
            raise InputError("--animator and --first-frame are required (or use --compare)")
        result = generate(
            FLAGS.animator, FLAGS.lmdm, first_frame, FLAGS.out, method=FLAGS.method,
            num_frames=FLAGS.frames, seed=FLAGS.seed, steps=FLAGS.steps,
            guidance=FLAGS.guidance, chunk_size=FLAGS.chunk_size, devices=FLAGS.devices,
            batch_size=FLAGS.batch_size, display=FLAGS.display_size, fps=FLAGS.fps,
        )  # fmt: skip
    except (ValueError, OSError) as e:  # AnimateError, ConfigError, unreadable files.
        sys.exit(f"error: {e}")
    stats = result["statistics"]
    print(
        f"wrote {', '.join(result['paths'])}: motion in {result['motion_seconds']:.1f} s; "
        f"norm by window {[round(v, 2) for v in stats['norm_mean']]}"
    )


if __name__ == "__main__":
    define_flags()
    run(main)
