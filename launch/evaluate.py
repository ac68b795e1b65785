r"""The evaluation report: every sampler on held-out clips, scored, tabled and plotted.

  python -m launch.evaluate --checkpoint runs/sdit_tiny --clips 1 --out runs/sdit_tiny/study
  python -m launch.evaluate --checkpoint runs/sdit_s --data video_dir:/data/vox256/ \
      --methods anchored_known,independent --plan contiguous --seeds 0,1,2 \
      --lpips_weights weights/lpips/ --inception_weights weights/pt_inception.pth --out reports/s
  python -m launch.evaluate --animator runs/leo_animator --lmdm runs/leo_lmdm --out reports/leo
  python -m launch.evaluate --sweep runs/sweeps/temporal --out reports/temporal

Self-reenactment of held-out clips: the source is the clip's frame 0, the driving signal its
landmarks, ground truth its frames. `--data` picks the clips: by default the checkpoint's own
held-out (test) split; `synthetic` (the run's held-out synthetic faces); `video_dir:ROOT` or
`frame_dir:ROOT` (the test/ videos of a dataset folder, see docs/real_data.md).

The study asks what anchored sampling is for: do the segments of a long video agree? Each
method (`anchored_known`, `anchored_generated`, `independent`, `autoregressive`; copy-source
is always added) runs on every plan of `--plan` and seed of `--seeds`, and is scored by
`anchored_jax.evaluation.metric_suite`: fidelity, PSNR by distance from the anchor, seam ratio,
spread between segments, sharpness and flicker ratios, AKD. Numbers are mean ± std over seeds.
Metrics whose weights are not given are reported as skipped, with the reason.

Writes into `--out`: `metrics.json`, `report.md`, per plan `psnr_vs_distance_<plan>.png` and
`drift_vs_distance_<plan>.png`, `frame_strip.png` (and `frame_strip_<plan>.png` for the other
plans; also as TensorBoard images in `tb/`), and for the first `--sample_clips` clips a
side-by-side video per method and one per plan comparing them all. Every finished (method,
plan, seed, clip) is saved at once to `parts/`: an interrupted run, run again, computes only
what is missing.
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
from absl import flags, logging  # noqa: E402

from anchored_jax.diffusion.schedules import make_schedule  # noqa: E402
from anchored_jax.evaluation import frame_strip, metric_suite, report, study_options  # noqa: E402
from anchored_jax.evaluation.consistency_metrics import l1_T, psnr_T, ssim_T  # noqa: E402
from anchored_jax.evaluation.seed_statistics import across_seeds  # noqa: E402
from anchored_jax.evaluation.segment_metrics import segment_owner_T  # noqa: E402
from anchored_jax.evaluation.study_options import COPY, REPORT_METHODS  # noqa: E402
from anchored_jax.pipelines.checkpoints import load_model, load_sdit  # noqa: E402
from anchored_jax.pipelines.command_line import run  # noqa: E402
from anchored_jax.pipelines.reenactment import model_codec  # noqa: E402
from anchored_jax.sampling.sampler_settings import (  # noqa: E402
    GENERATED_ANCHOR_MODES,
    SamplerSettings,
    comparison_run,
)
from anchored_jax.sampling.segment_plan import plan_segments  # noqa: E402
from anchored_jax.sampling.video_generation import generate_video, training_window_s  # noqa: E402
from data_pipelines.inference_inputs import held_out_video, to_unit_range  # noqa: E402
from data_pipelines.output_videos import PanelVideos, render_landmarks, to_display  # noqa: E402

REFERENCE = "reference"
AUTOREGRESSIVE = "autoregressive"
DATA_KINDS = ("video_dir", "frame_dir")


def progress_bar(total: int, desc: str):
    """A tqdm bar advanced by the sampler's in-loop callback; closed by the caller."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr)
    return bar, lambda index: bar.update(1)


def write_method_video(path, video_THWC, real_THWC, landmarks_TLC, fps, display):
    """source | landmarks | real | generated of one method, written a chunk at a time."""
    source_u8 = to_display(real_THWC[:1], display)
    with PanelVideos(path, fps, display, total_frames=len(video_THWC)) as videos:
        for lo in range(0, len(video_THWC), 64):
            hi = lo + 64
            videos.append(video_THWC[lo:hi], [source_u8, render_landmarks(landmarks_TLC[lo:hi],
                          display), to_display(real_THWC[lo:hi], display)])  # fmt: skip
        return videos.close()


def parse_data(spec: str) -> tuple[str, str]:
    """`--data` as `(kind, root)`: ('', '') is the run's own held-out split."""
    kind, _, root = spec.partition(":")
    if spec in ("", "synthetic") or (kind in DATA_KINDS and root):
        return kind, root
    raise ValueError(
        f"--data: expected '', synthetic, video_dir:ROOT or frame_dir:ROOT, got {spec!r}"
    )


def data_kind(config, data: str) -> str:
    """What the evaluated clips are: `synthetic`, `video_dir`, `frame_dir` (or the run's
    own data source, e.g. `latents`, which `held_out_clips` then refuses)."""
    kind, _ = parse_data(data)
    return kind or config.data.source


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


DEFAULT_SETTINGS = SamplerSettings()


def _sampler_choices(noise_correlation: float, generated_anchor: str) -> None:
    if not 0.0 <= noise_correlation < 1.0:
        raise ValueError(f"--noise_correlation: expected in [0, 1), got {noise_correlation!r}")
    if generated_anchor not in GENERATED_ANCHOR_MODES:
        raise ValueError(
            f"--generated_anchor: expected one of {list(GENERATED_ANCHOR_MODES)}, "
            f"got {generated_anchor!r}"
        )


def _generate(loaded, codec, method, plan_kind, seed, clip, real_THWC, landmarks_TLC, fps,
              opts):  # fmt: skip
    """One method's video of one clip and the owner of each frame under the plan it ran."""
    config, graphdef, params = loaded
    T = len(real_THWC)
    kind, settings = comparison_run(
        method,
        plan_kind,
        num_steps=opts["steps"],
        chunk_size=opts["chunk_size"],
        max_anchor_gap_s=opts["max_anchor_gap_s"],
        identity_scale=opts["guidance"][0],
        landmark_scale=opts["guidance"][1],
        noise_correlation=opts["noise_correlation"],
        generated_anchor_mode=opts["generated_anchor"],
    )
    plan = plan_segments(T, config.data.clip_frames, 0, kind, seed=seed)
    source_model = codec.encode(real_THWC[0])
    total = plan.num_segments if method == "autoregressive" else opts["steps"]
    bar, tick = progress_bar(total, f"clip {clip} seed {seed} {kind} {method}")
    try:
        video, _ = generate_video(
            graphdef, params,
            make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps),
            prediction=config.diffusion.prediction, plan=plan, landmarks_TLC=landmarks_TLC,
            frame_times_T=np.arange(T) / fps, identity=source_model, source_HWC=source_model,
            settings=settings, key=jax.random.fold_in(jax.random.key(seed), clip),
            progress=tick,
        )  # fmt: skip
    finally:
        bar.close()
    return codec.decode(video), segment_owner_T(plan)


def study_parts(methods, plans, seeds):
    """`(part name, method, plan, seed)` of every part of one clip, in computing order.

    The real clip and copy-source depend on neither plan nor seed; the autoregressive chain
    runs the contiguous plan whatever the table's plan, so it is computed once per seed.
    """
    jobs = [(REFERENCE, REFERENCE, None, None), (COPY, COPY, None, None)]
    for seed in seeds:
        for plan in plans:
            for method in methods:
                if method != AUTOREGRESSIVE:
                    jobs.append((report.part_name(method, plan, seed), method, plan, seed))
        if AUTOREGRESSIVE in methods:
            name = report.part_name(AUTOREGRESSIVE, "contiguous", seed)
            jobs.append((name, AUTOREGRESSIVE, "contiguous", seed))
    return jobs


def table_part(method: str, plan: str, seed: int) -> str:
    """The part that fills (method, plan, seed) in the tables."""
    if method == COPY:
        return COPY
    return report.part_name(method, "contiguous" if method == AUTOREGRESSIVE else plan, seed)


def _comparison_video(out, name, clip, videos_u8, real_THWC, landmarks_TLC, fps, display):
    """source | landmarks | real | each method, side by side, for one sample clip."""
    from data_pipelines.video_writing import write_video

    panels = [
        np.broadcast_to(to_display(real_THWC[:1], display), (len(real_THWC), display, display, 3)),
        render_landmarks(landmarks_TLC, display),
        to_display(real_THWC, display),
    ]
    panels += [to_display(to_unit_range(v), display) for v in videos_u8]
    path = os.path.join(out, f"clip{clip}_{name}_comparison.mp4")
    write_video(path, np.concatenate(panels, axis=2), fps)
    return os.path.basename(path)


def run_report(
    checkpoint: str,
    out: str,
    *,
    data: str = "",
    frames: int = 512,
    clips: int = 2,
    methods=REPORT_METHODS,
    plans=("contiguous", "random"),
    seeds=(0, 1),
    num_steps: int = 5,
    chunk_size: int = 32,
    max_anchor_gap_s: float = 0.0,
    guidance=(1.0, 1.75),
    noise_correlation: float = DEFAULT_SETTINGS.noise_correlation,
    generated_anchor: str = DEFAULT_SETTINGS.generated_anchor_mode,
    vae: str = "",
    suite: metric_suite.MetricSuite | None = None,
    sample_clips: int = 1,
    display: int = 128,
    max_parts: int = 0,
    loaded=None,
) -> dict | None:
    """Scores every (method, plan, seed, clip) not already in `out/parts`, then writes the
    report.

    methods: report names (`study_options.REPORT_METHODS`; copy-source is always added).
    max_parts: > 0 stops after computing that many new parts (returns None; run again to
    continue). Returns the metrics written to `metrics.json`.
    """
    methods = study_options.resolve_methods(list(methods))
    plans = study_options.check_plans(list(plans))
    seeds = study_options.check_seeds(list(seeds))
    guidance = study_options.parse_guidance(guidance)
    study_options.check_anchor_gap(max_anchor_gap_s)
    for flag, value, lowest in (("--frames", frames, 2), ("--clips", clips, 1),
                                ("--steps", num_steps, 1), ("--chunk_size", chunk_size, 1),
                                ("--sample_clips", sample_clips, 0), ("--display_size", display, 8),
                                ("--max_parts", max_parts, 0)):  # fmt: skip
        study_options.check_count(flag, value, lowest)
    # The sampler's own checks, before any load: one line naming the flag.
    _sampler_choices(noise_correlation, generated_anchor)
    loaded = loaded or load_sdit(checkpoint)
    config = loaded[0]
    if max_anchor_gap_s < 0:  # -1: the run's training window
        max_anchor_gap_s = training_window_s(config)
    codec = model_codec(config, vae)
    suite = suite or metric_suite.build_suite()
    source, video_ids = held_out_clips(config, data, frames, clips)
    opts = dict(steps=num_steps, chunk_size=chunk_size, guidance=list(guidance),
                max_anchor_gap_s=float(max_anchor_gap_s),
                noise_correlation=float(noise_correlation),
                generated_anchor=generated_anchor)  # fmt: skip
    settings = dict(
        checkpoint=os.path.abspath(checkpoint), data=data or config.data.source,
        frames=frames, clips=clips, methods=methods, plans=plans, seeds=seeds,
        video_ids=video_ids, vae=vae, sample_clips=sample_clips, display=display,
        computed=sorted(k for k in metric_suite.OPTIONAL if k not in suite.skipped), **opts,
    )  # fmt: skip
    report.check_settings(out, settings)
    jobs = study_parts(methods, plans, seeds)
    parts = {name: [] for name, *_ in jobs}
    todo = sum(not os.path.exists(report.part_path(out, n, c)) for n in parts for c in range(clips))
    from tqdm import tqdm

    overall = tqdm(total=len(parts) * clips, initial=len(parts) * clips - todo, desc="parts",
                   unit="part", file=sys.stderr, position=0)  # fmt: skip
    computed = 0
    try:
        for clip, video_id in enumerate(video_ids):
            record = source[video_id]
            clip_data = None
            for name, method, plan, seed in jobs:
                path = report.part_path(out, name, clip)
                part = report.load_part(path)
                if part is None:
                    if max_parts and computed >= max_parts:
                        return None
                    if clip_data is None:
                        real = to_unit_range(source.read_frames(video_id, np.arange(frames)))
                        clip_data = (real, record.landmarks_TLC[:frames], record.fps)
                    # The first seed's videos feed the frame strip and the sample videos.
                    keep = seed in (None, seeds[0]) and clip < max(sample_clips, 1)
                    part = _compute_part(loaded, codec, suite, name, method, plan, seed, clip,
                                         clip_data, opts, out, keep=keep,
                                         write=keep and clip < sample_clips,
                                         display=display)  # fmt: skip
                    report.save_part(path, part)
                    computed += 1
                    overall.update(1)
                parts[name].append(part)
    finally:
        overall.close()
    metrics = summarize_parts(parts, settings, suite.skipped, config.data.clip_frames)
    real0 = to_unit_range(source.read_frames(video_ids[0], np.arange(frames)))
    strips = write_frame_strips(
        out, parts, methods, plans, seeds[0], real0, config.data.clip_frames
    )
    videos = []
    for clip in range(min(sample_clips, clips)):
        record = source[video_ids[clip]]
        real_THWC = to_unit_range(source.read_frames(video_ids[clip], np.arange(frames)))
        for plan in plans:
            names = [table_part(m, plan, seeds[0]) for m in methods]
            videos.append(_comparison_video(
                out, plan, clip, [parts[n][clip]["video_u8"] for n in names], real_THWC,
                record.landmarks_TLC[:frames], record.fps, display,
            ))  # fmt: skip
    report.write_report(out, metrics, videos, strips)
    return metrics


def _compute_part(loaded, codec, suite, name, method, plan, seed, clip, clip_data, opts, out, *,
                  keep, write, display):  # fmt: skip
    """One part: the real clip's reference features, or a method's video scored.

    keep: store the video (uint8) in the part, for the frame strip and comparison videos;
    write: also write the method's own side-by-side video.
    """
    real, landmarks, fps = clip_data
    if method == REFERENCE:
        return metric_suite.reference_clip(suite, real, landmarks)
    seconds = 0.0
    owner_T = None
    if method == COPY:
        video = np.broadcast_to(real[:1], real.shape)
    else:
        start = time.perf_counter()
        video, owner_T = _generate(loaded, codec, method, plan, seed, clip, real, landmarks, fps,
                                   opts)  # fmt: skip
        seconds = time.perf_counter() - start
        if write:
            path = os.path.join(out, f"clip{clip}_{report.part_name(method, plan)}.mp4")
            write_method_video(path, video, real, landmarks, fps, display)
    part = metric_suite.score_clip(suite, video, real, landmarks, owner_T)
    part["seconds"] = np.asarray(seconds)
    if keep:
        part["video_u8"] = np.clip(np.round((video + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return part


def summarize_parts(parts: dict, settings: dict, skipped: dict, clip_frames: int) -> dict:
    """metrics.json's content: per plan, per method, mean and std over seeds of the rows that
    pool each seed's clips, and the same for the real video's reference row."""
    skipped = dict(skipped)
    plans_out = {}
    for plan in settings["plans"]:
        per_seed = {}
        for seed in settings["seeds"]:
            by_method = {m: parts[table_part(m, plan, seed)] for m in (*settings["methods"], COPY)}
            owner_T = segment_owner_T(
                plan_segments(settings["frames"], clip_frames, 0, plan, seed=seed)
            )
            per_seed[seed] = metric_suite.summarize_suite(
                by_method, parts[REFERENCE], skipped, owner_T
            )
            skipped.update(per_seed[seed]["skipped"])
        result = {"methods": {}}
        for method in (*settings["methods"], COPY):
            rows = [per_seed[s]["methods"][method] for s in settings["seeds"]]
            mean, std = across_seeds(rows)
            result["methods"][method] = dict(
                mean=mean, std=std, per_seed={str(s): r for s, r in zip(settings["seeds"], rows)}
            )
        real_rows = [per_seed[s]["real"] for s in settings["seeds"]]
        mean, std = across_seeds(real_rows)
        result["real"] = dict(
            mean=mean, std=std, per_seed={str(s): r for s, r in zip(settings["seeds"], real_rows)}
        )
        plans_out[plan] = result
    seconds = {}  # generation time per method, over all its parts (each counted once)
    for method in (*settings["methods"], COPY):
        names = {table_part(method, p, s) for p in settings["plans"] for s in settings["seeds"]}
        seconds[method] = float(sum(float(part["seconds"]) for n in names for part in parts[n]))
    return dict(settings=settings, seconds=seconds, skipped=skipped, plans=plans_out)


def write_frame_strips(out, parts, methods, plans, seed, real_THWC, clip_frames) -> list[str]:
    """`frame_strip.png` (first plan) and `frame_strip_<plan>.png`, from clip 0 of the first
    seed, also written as TensorBoard images to `<out>/tb`."""
    real_u8 = np.clip(np.round((real_THWC + 1.0) * 127.5), 0, 255).astype(np.uint8)
    names, images = [], {}
    for i, plan in enumerate(plans):
        owner_T = segment_owner_T(plan_segments(len(real_THWC), clip_frames, 0, plan, seed=seed))
        rows = {"real": real_u8}
        rows.update({m: parts[table_part(m, plan, seed)][0]["video_u8"] for m in methods})
        name = report.strip_name(plan, first=i == 0)
        images[f"frame_strip/{plan}"] = frame_strip.write_frame_strip(
            os.path.join(out, name), rows, frame_strip.strip_columns(owner_T), owner_T,
            f"clip 0, seed {seed}, plan {plan} (segment = the plan's owner of the frame; "
            "autoregressive: contiguous)",
        )  # fmt: skip
        names.append(name)
    frame_strip.write_tensorboard_images(os.path.join(out, "tb"), images)
    return names


# ---------------------------------------------------------------------------------- LEO
def evaluate_animator(workdir: str, videos: int = 8, frames: int = 32, akd: bool = True) -> dict:
    """Self-reconstruction of held-out videos vs copy-source: frame 0 is the source and every
    frame drives it (absolute motion); means over frames 1.., frames clipped to [-1, 1] (as the
    training loop's evaluation). With `akd` on synthetic data, AKD in pixels too (the synthetic
    faces' landmark regressor against the exact driving landmarks; `akd_floor_px`: the
    regressor on the real frames)."""
    from anchored_jax.evaluation import keypoint_metrics
    from anchored_jax.pipelines import leo
    from anchored_jax.training.tasks.animator import keypoint_distance_px
    from data_pipelines.frame_pairs import make_pair_source, read_videos

    animator = load_model(workdir, "animator", "--animator")
    fns = leo.animator_fns(animator)
    data = animator.config.data
    real_BTHWC = read_videos(data, "test", videos, frames)
    recon_BTHWC = np.clip(np.stack(
        [leo.render_codes(fns, v[0], leo.encode_codes(fns, v), mode="absolute") for v in real_BTHWC]
    ), -1.0, 1.0)  # fmt: skip
    with_akd = akd and data.source == "synthetic"
    if with_akd:
        extract = keypoint_metrics.landmark_extractor("synthetic")
        source = make_pair_source(data, "test")
        landmarks_BTL2 = np.stack([source[v].landmarks_TLC[:frames, :, :2]
                                   for v in range(len(real_BTHWC))])  # fmt: skip
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
        if with_akd:
            rows[name]["akd_px"] = keypoint_distance_px(extract, video, landmarks_BTL2)
    if with_akd:
        rows["akd_floor_px"] = keypoint_distance_px(extract, real_BTHWC, landmarks_BTL2)
    if data.source == "synthetic":
        rows["code_probe_r2"] = code_probe(fns, data, frames)
    return dict(workdir=os.path.abspath(workdir), videos=len(real_BTHWC),
                frames=real_BTHWC.shape[1], **rows)  # fmt: skip


def code_probe(fns, data, frames: int, train_videos: int = 64, test_videos: int = 32) -> dict:
    """R² on held-out videos of linear maps from the animator's motion codes to the synthetic
    faces' pose and expression factors, both relative to frame 0 (`evaluation.motion_probe`),
    fitted on the first `train_videos` training videos."""
    from anchored_jax.evaluation.motion_probe import probe_r2, relative_to_first
    from anchored_jax.pipelines import leo
    from data_pipelines.frame_pairs import make_pair_source, read_videos
    from data_pipelines.synthetic_faces import FACTORS

    def codes_and_factors(split, count):
        videos_VTHWC = read_videos(data, split, count, frames)
        source = make_pair_source(data, split)
        T = videos_VTHWC.shape[1]
        codes = np.stack([leo.encode_codes(fns, v) for v in videos_VTHWC])
        factors = np.stack([source.factors(v, np.arange(T)) for v in range(len(videos_VTHWC))])
        return relative_to_first(codes), relative_to_first(factors)

    r2 = probe_r2(
        *codes_and_factors("train", train_videos), *codes_and_factors("test", test_videos)
    )
    return {name: float(v) for name, v in zip(FACTORS, r2, strict=True)}


def evaluate_lmdm(workdir: str, sequences: int = 16) -> dict:
    """|delta alpha| statistics of generated motion vs held-out real code windows."""
    from anchored_jax.sampling.leo_motion_generation import delta_statistics, sample_motion
    from data_pipelines.lmdm_codes import load_codes
    from data_pipelines.motion_codes import code_windows

    config, graphdef, params = load_model(workdir, "lmdm", "--lmdm")
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
    flags.DEFINE_integer("frames", 512, "Frames per held-out clip.")
    flags.DEFINE_integer("clips", 2, "Held-out clips to evaluate.")
    flags.DEFINE_list(
        "methods", None, "Samplers to compare, of anchored_known, anchored_generated, "
        "independent, autoregressive (copy-source is added). Default: all, --anchor picking "
        "the anchored ones.",
    )  # fmt: skip
    flags.DEFINE_string(
        "anchor", "both", "known | generated | both: the anchored variants run when --methods "
        "is not given.",
    )  # fmt: skip
    flags.DEFINE_list("plan", ["contiguous", "random"], "Segment plans (contiguous, strided, "
                      "random); autoregressive always runs contiguous.")  # fmt: skip
    flags.DEFINE_list("seeds", ["0", "1"], "Noise seeds (also the random plan's seed).")
    flags.DEFINE_string(
        "guidance", "1,1.75", "IDENTITY_SCALE,LANDMARK_SCALE: CFG scales (1 = off)."
    )
    flags.DEFINE_integer("steps", 5, "DDIM steps (each one model call per CFG branch).")
    flags.DEFINE_float(
        "noise_correlation", DEFAULT_SETTINGS.noise_correlation,
        "In [0, 1): starting noise shared between frames (sampling.noise_correlation).",
    )  # fmt: skip
    flags.DEFINE_string(
        "generated_anchor", DEFAULT_SETTINGS.generated_anchor_mode,
        "anchored_generated: averaged (with every segment) | settled (made first, then held).",
    )  # fmt: skip
    flags.DEFINE_integer("chunk_size", 32, "Segments denoised at once.")
    flags.DEFINE_float(
        "max_anchor_gap", 0.0,
        "Seconds; >0 caps the anchor gap; 0 = true times; -1 = the run's training window.",
    )  # fmt: skip
    flags.DEFINE_string("vae", "", "Latent models: the diffusers VAE folder (default data.vae).")
    flags.DEFINE_string("lpips_weights", "", "LPIPS: BACKBONE,LINEAR state dicts or a folder.")
    flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone.")
    flags.DEFINE_string("inception_weights", "", "FID: Inception-v3 weights file.")
    flags.DEFINE_string("i3d_weights", "", "FVD: I3D weights file.")
    flags.DEFINE_string("identity_weights", "", "CSIM/AED: identity embedder weights file.")
    flags.DEFINE_string(
        "akd_landmarks", "auto", "AKD's landmark extractor: auto (synthetic on synthetic data, "
        "else mediapipe) | synthetic | mediapipe | '' (skip AKD).",
    )  # fmt: skip
    flags.DEFINE_integer("sample_clips", 1, "Clips to write side-by-side videos of.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")
    flags.DEFINE_integer("max_parts", 0, "> 0: stop after that many new parts (rerun resumes).")
    flags.DEFINE_string("animator", "", "LEO animator workdir: self-reconstruction report.")
    flags.DEFINE_string("lmdm", "", "LEO LMDM workdir: generated vs real motion statistics.")
    flags.DEFINE_integer("leo_videos", 8, "LEO: held-out videos / motion sequences.")
    flags.DEFINE_string("sweep", "", "Sweep folder: one table and plot across its variants.")
    flags.DEFINE_string("out", None, "Report folder.")
    flags.DEFINE_string("out_dir", None, "Alias of --out.")


def check_flags(FLAGS) -> dict:
    """Every study flag checked (one `--flag: expected ..., got ...` line) before any load;
    returns run_report's keyword arguments."""
    parse_data(FLAGS.data)
    for flag, lowest in (("frames", 2), ("clips", 1), ("steps", 1), ("chunk_size", 1),
                         ("sample_clips", 0), ("display_size", 8), ("max_parts", 0),
                         ("leo_videos", 1)):  # fmt: skip
        study_options.check_count(f"--{flag}", getattr(FLAGS, flag), lowest)
    _sampler_choices(FLAGS.noise_correlation, FLAGS.generated_anchor)
    methods = study_options.resolve_methods(FLAGS.methods, FLAGS.anchor)
    study_options.landmark_kind(FLAGS.akd_landmarks, "")  # the name; auto is resolved later
    return dict(
        data=FLAGS.data, frames=FLAGS.frames, clips=FLAGS.clips, methods=methods,
        plans=study_options.check_plans(FLAGS.plan), seeds=study_options.check_seeds(FLAGS.seeds),
        num_steps=FLAGS.steps, chunk_size=FLAGS.chunk_size,
        max_anchor_gap_s=study_options.check_anchor_gap(FLAGS.max_anchor_gap),
        guidance=study_options.parse_guidance(FLAGS.guidance),
        noise_correlation=FLAGS.noise_correlation, generated_anchor=FLAGS.generated_anchor,
        vae=FLAGS.vae,
        sample_clips=FLAGS.sample_clips, display=FLAGS.display_size, max_parts=FLAGS.max_parts,
    )  # fmt: skip


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    FLAGS = flags.FLAGS
    out = FLAGS.out or FLAGS.out_dir
    try:
        if not out:
            raise ValueError("--out: the report folder is required")
        if FLAGS.sweep:
            from anchored_jax.evaluation.sweep_report import write_sweep_report

            os.makedirs(out, exist_ok=True)
            write_sweep_report(FLAGS.sweep, out)
            print(f"sweep report of {FLAGS.sweep} in {out}")
            return
        if not (FLAGS.checkpoint or FLAGS.animator or FLAGS.lmdm):
            raise ValueError("--checkpoint (or --animator / --lmdm / --sweep) is required")
        options = check_flags(FLAGS)  # before the slow loads
        os.makedirs(out, exist_ok=True)
        metrics = {}
        if FLAGS.checkpoint:
            loaded = load_sdit(FLAGS.checkpoint)
            landmarks = study_options.landmark_kind(
                FLAGS.akd_landmarks, data_kind(loaded[0], FLAGS.data)
            )
            suite = metric_suite.build_suite(
                lpips_weights=FLAGS.lpips_weights, lpips_net=FLAGS.lpips_net,
                inception_weights=FLAGS.inception_weights, i3d_weights=FLAGS.i3d_weights,
                identity_weights=FLAGS.identity_weights, landmarks=landmarks,
            )  # fmt: skip
            metrics = run_report(FLAGS.checkpoint, out, suite=suite, loaded=loaded, **options)
            if metrics is None:
                print(f"stopped after {FLAGS.max_parts} new parts; run again to continue")
                return
        leo = {}
        if FLAGS.animator:
            leo["animator"] = evaluate_animator(
                FLAGS.animator, FLAGS.leo_videos, akd=FLAGS.akd_landmarks in ("auto", "synthetic")
            )
        if FLAGS.lmdm:
            leo["lmdm"] = evaluate_lmdm(FLAGS.lmdm, FLAGS.leo_videos)
        if leo:
            previous = os.path.join(out, "metrics.json")
            if not metrics and os.path.exists(previous):  # keep a checkpoint report already there
                with open(previous) as f:
                    metrics = json.load(f)
            metrics["leo"] = leo
            report.write_report(out, metrics, *_existing_media(out))
    except (ValueError, OSError) as e:  # bad flags, checkpoints, data folders, weights
        sys.exit(f"error: {e}")
    print(open(os.path.join(out, "report.md")).read())
    print(f"files in {out}")


def _existing_media(out: str) -> tuple[list[str], list[str]]:
    """The comparison videos and frame strips already in a report folder."""
    names = sorted(os.listdir(out))
    return ([f for f in names if f.endswith("_comparison.mp4")],
            [f for f in names if f.startswith("frame_strip") and f.endswith(".png")])  # fmt: skip


if __name__ == "__main__":
    define_flags()
    run(main)
