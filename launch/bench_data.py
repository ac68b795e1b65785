r"""The input-pipeline benchmark (`python -m launch.benchmark data`): clips/s for each source.

  python -m launch.benchmark data                       # 256 x 256, K = 8, 1 and 2 workers
  python -m launch.benchmark data --size 32 --clip_frames 4 --sources video_dir,tfds

It writes a small dataset of synthetic talking faces in every on-disk form (H.264 mp4 files
with 8-frame GOPs, FOMM-style PNG frame folders, ArrayRecord shards of JPEGs) to a temporary
folder, then times `build_clip_dataset` batches from each source with grain worker processes,
after one warm-up batch. The last lines compare the rates with what training consumes: the tiny
config on this CPU (its measured step time, `--tiny_step_s`) and the S config per accelerator
(analytic FLOPs per clip at `--accelerator_flops` x `--mfu`).
"""

import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # noqa: E402

_SIZE = flags.DEFINE_integer("size", 256, "Frame side in pixels.")
_K = flags.DEFINE_integer("clip_frames", 8, "Frames per clip (K).")
_VIDEOS = flags.DEFINE_integer("videos", 8, "Training videos written per source.")
_FRAMES = flags.DEFINE_integer("frames", 48, "Frames per video.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Clips per batch.")
_BATCHES = flags.DEFINE_integer("batches", 6, "Timed batches per measurement.")
_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "grain worker process counts to time.")
_SOURCES = flags.DEFINE_list(
    "sources", ["synthetic", "video_dir", "frame_dir", "tfds"], "Source kinds to time."
)
_WORKDIR = flags.DEFINE_string("workdir", "", "Where to write the data (default: a temp dir).")
_TINY_STEP = flags.DEFINE_float(
    "tiny_step_s",
    1.24,
    "Seconds per tiny train step (batch 8) on this machine, from "
    "`python -m launch.benchmark train --config configs/sdit.py:tiny`.",
)
_ACCEL_FLOPS = flags.DEFINE_float("accelerator_flops", 989e12, "Peak FLOP/s (H100 bf16 dense).")
_MFU = flags.DEFINE_float("mfu", 0.4, "Model FLOP utilisation assumed for the S config.")


def write_datasets(root: str, size: int, num_videos: int, num_frames: int) -> dict[str, str]:
    """Writes the same synthetic videos as mp4 files, PNG folders and ArrayRecord shards."""
    import numpy as np
    from PIL import Image

    from data_pipelines.landmark_files import save_landmarks
    from data_pipelines.sources import SyntheticFaceSource
    from data_pipelines.tfds_face_videos import build
    from data_pipelines.video_writing import write_video

    video_root, frame_root = os.path.join(root, "videos"), os.path.join(root, "frames")
    for split, count in (("train", num_videos), ("test", 2)):
        source = SyntheticFaceSource(
            split,
            num_identities=count,
            videos_per_identity=1,
            num_frames=num_frames,
            image_size=size,
            fps=25.0,
            seed=0,
        )
        for i in range(count):
            frames_THWC = source.read_frames(i, np.arange(num_frames))
            landmarks_TLC = source[i].landmarks_TLC
            name = f"v{i:04d}"
            path = os.path.join(video_root, split, name + ".mp4")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_video(path, frames_THWC, 25.0, keyframe_interval=8)
            save_landmarks(path[:-4] + ".npz", landmarks_TLC, 25.0, "synthetic68")
            folder = os.path.join(frame_root, split, name)
            os.makedirs(folder, exist_ok=True)
            for t, frame in enumerate(frames_THWC):
                Image.fromarray(frame).save(os.path.join(folder, f"{t:05d}.png"))
            save_landmarks(
                os.path.join(folder, "landmarks.npz"), landmarks_TLC, 25.0, "synthetic68"
            )
    tfds_dir = os.path.join(root, "tfds")
    config = {256: "s256", 64: "s64", 32: "s32"}.get(size)
    if config is None:
        raise SystemExit(f"error: --size: the tfds source needs 32, 64 or 256, got {size}")
    build(video_root, tfds_dir, config)
    return {
        "synthetic": "",
        "video_dir": video_root,
        "frame_dir": frame_root,
        "tfds": tfds_dir,
        "tfds_name": f"tfds:face_videos/{config}",
    }


def clips_per_second(source: str, root: str, workers: int) -> float:
    import ml_collections

    from data_pipelines.pipeline import build_clip_dataset

    data = ml_collections.ConfigDict(
        dict(
            source=source,
            root=root,
            image_size=_SIZE.value,
            clip_frames=_K.value,
            fps=25.0,
            video_frames=_FRAMES.value,
            num_train_identities=_VIDEOS.value,
            num_test_identities=2,
            videos_per_identity=1,
            sampler="random_subset",
            min_window=_K.value,
            max_window=32,
            identity_frame="random",
            seed=0,
            worker_count=workers,
        )
    )
    iterator = iter(build_clip_dataset(data, split="train", batch_size=_BATCH.value, seed=0))
    next(iterator)  # Warm-up: worker start-up, file opening.
    t0 = time.perf_counter()
    for _ in range(_BATCHES.value):
        next(iterator)
    return _BATCHES.value * _BATCH.value / (time.perf_counter() - t0)


def s_config_clips_per_second() -> float:
    from anchored_jax.models.flops import sdit_train_flops_per_example
    from anchored_jax.training.config_checks import validate_sdit_config
    from configs import sdit

    config = sdit.get_config("S")
    config.data.clip_frames = _K.value
    flops_per_clip = sdit_train_flops_per_example(validate_sdit_config(config), _K.value)
    return _ACCEL_FLOPS.value * _MFU.value / flops_per_clip


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.ERROR)  # The scan summaries are not the point here.
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="bench_data_")
    t0 = time.perf_counter()
    roots = write_datasets(workdir, _SIZE.value, _VIDEOS.value, _FRAMES.value)
    print(
        f"wrote {_VIDEOS.value} videos x {_FRAMES.value} frames per source to {workdir} "
        f"in {time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPU cores"
    )
    rows = []
    for source in _SOURCES.value:
        name = roots["tfds_name"] if source == "tfds" else source
        for workers in (int(w) for w in _WORKERS.value):
            rows.append((source, workers, clips_per_second(name, roots[source], workers)))
    print(
        f"\n{_SIZE.value}x{_SIZE.value}, K = {_K.value} (+1 identity frame), batch {_BATCH.value}\n"
    )
    print("| source | workers | clips/s | ms/clip |")
    print("|---|---|---|---|")
    for source, workers, rate in rows:
        print(f"| {source} | {workers} | {rate:.1f} | {1000 / rate:.1f} |")
    tiny_need = 8 / _TINY_STEP.value
    s_need = s_config_clips_per_second()
    slowest = min(rate for _, _, rate in rows)
    best = max(rate for _, _, rate in rows)
    print(
        f"\ntiny config consumes {tiny_need:.1f} clips/s on this CPU (batch 8 every "
        f"{_TINY_STEP.value} s, 32x32, K = 4); the slowest source here gives {slowest:.1f} "
        f"clips/s at {_SIZE.value}x{_SIZE.value}, K = {_K.value}: {slowest / tiny_need:.1f}x that"
    )
    print(
        f"S config consumes {s_need:.0f} clips/s per accelerator ({_ACCEL_FLOPS.value:.3g} "
        f"FLOP/s at {_MFU.value:.0%} MFU, K = {_K.value}); the best source here gives "
        f"{best:.1f} clips/s on 2 cores, so feeding one accelerator takes about "
        f"{2 * s_need / best:.0f} such cores"
    )
