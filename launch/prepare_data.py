r"""Prepare a folder of face videos for training: crop, resize, landmarks, in parallel, resumable.

  python -m launch.prepare_data --input /data/voxceleb --output /data/vox256 --size 256

The input keeps its layout (`train/`, `test/`, identity folders) in the output. Each video
becomes one clip per face track (`face_preparation`): `<name>.mp4` (H.264, square, short GOPs
for fast random access) and `<name>.npz` landmarks; a video with several tracks gives
`<name>_t<first frame>.mp4` for each. Videos that share a stem in one folder (`clip.mp4`,
`clip.webm`) keep their extension in the name (`clip.mp4.mp4`, `clip.webm.mp4`), so no output
is written twice. Files are written atomically with the usual umask mode (group-readable). A
rerun skips the videos already done (a marker per video under `<output>/.prepare/`), and the
run ends with a summary: videos in, clips out, skipped and why (also written to
`<output>/prepare_summary.json`).

Variable-frame-rate video is kept: its frames are re-timed from their real timestamps to its
average rate (`--resample_fps F` resamples every video to F fps instead). 10-bit video is
decoded to 8 bits.

Landmarks come from MediaPipe's FaceMesh model run with TF Lite in this environment
(`--landmarks facemesh`; the model files are installed once by
`python -m data_pipelines.face_models`) or from landmark files already beside the videos
(`--landmarks existing`). A driving video for reenactment:

  python -m launch.prepare_data --driving driving.mp4 --output driving_landmarks.npz

Optionally build the ArrayRecord shards afterwards (needs tensorflow-datasets):

  python -m launch.prepare_data ... --tfds_dir /data/tfds --tfds_config s256
"""

import argparse
import collections
import json
import multiprocessing
import os
import sys
import tempfile

from data_pipelines.face_landmarker import FaceMeshLandmarker
from data_pipelines.face_models import missing_reason
from data_pipelines.face_preparation import (
    CropSettings,
    ExistingLandmarks,
    driving_landmarks,
    prepare_video,
)
from data_pipelines.landmark_files import current_umask, save_landmarks
from data_pipelines.video_decoding import SKIP_REASONS, BadVideoError
from data_pipelines.video_files import find_videos
from data_pipelines.video_writing import write_video

_MARKERS = ".prepare"
# "mediapipe" is the former name of the same FaceMesh model, kept for existing scripts.
_LANDMARKERS = {
    "facemesh": FaceMeshLandmarker,
    "mediapipe": FaceMeshLandmarker,
    "existing": ExistingLandmarks,
}
_worker = {}  # Per-process landmarker, built once by `_init_worker`.


def _init_worker(landmarks: str) -> None:
    _worker["landmarker"] = _LANDMARKERS[landmarks]()


def _marker_path(output: str, name: str) -> str:
    return os.path.join(output, _MARKERS, name + ".json")


def _write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from the group
    os.replace(tmp, path)  # A marker exists only once everything it vouches for is written.


def output_keys(names: list[str]) -> dict[str, str]:
    """Input name -> output name without extension, never the same for two inputs.

    A stem shared by several inputs in one folder keeps each input's extension.
    """
    stems = collections.Counter(os.path.splitext(n)[0] for n in names)
    keys = {n: (os.path.splitext(n)[0] if stems[os.path.splitext(n)[0]] == 1 else n) for n in names}
    taken = collections.Counter(keys.values())
    for name in names:  # "a.mp4" kept as "a.mp4" could still meet an input "a.mp4.avi"
        if taken[keys[name]] > 1:
            raise SystemExit(f"error: --input: {name} and another video map to {keys[name]}.mp4")
    return keys


def _write_clip_video(path: str, frames_THWC, fps: float) -> None:
    """Writes beside the final name, then renames: readers never see a half-written video."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.mp4")
    try:
        write_video(tmp, frames_THWC, fps)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def prepare_one(job: tuple[str, str, str, str, CropSettings]) -> dict:
    """Prepares one video (in a worker process); returns what its marker records."""
    input_dir, output, name, key, settings = job
    try:
        clips = prepare_video(os.path.join(input_dir, name), _worker["landmarker"], settings)
    except BadVideoError as e:
        result = {"name": name, "clips": [], "skipped": e.reason, "message": str(e)}
    except ValueError as e:  # A landmark file that does not fit its video: the user must fix it.
        return {"name": name, "clips": [], "error": str(e)}
    else:
        stem = key
        written = []
        for clip in clips:
            clip_name = stem if len(clips) == 1 else f"{stem}_t{clip.start:05d}"
            path = os.path.join(output, clip_name + ".mp4")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_clip_video(path, clip.frames_THWC, clip.landmarks.fps)
            track = clip.landmarks
            save_landmarks(
                os.path.join(output, clip_name + ".npz"),
                track.landmarks_TLC,
                track.fps,
                track.layout,
            )
            written.append(clip_name + ".mp4")
        result = {"name": name, "clips": written, "skipped": None}
    _write_json(_marker_path(output, name), result)
    return result


def _progress(iterable, total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, unit="video", dynamic_ncols=True)


def _say(line: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    except ImportError:
        print(line, file=sys.stderr)


def prepare_folder(
    input_dir: str, output: str, settings: CropSettings, *, landmarks: str, workers: int
) -> dict:
    """Prepares every video under `input_dir` not yet done; returns the run's summary."""
    names = find_videos(input_dir)
    keys = output_keys(names)
    done, todo = [], []
    for name in names:
        marker = _marker_path(output, name)
        if os.path.exists(marker):
            with open(marker) as f:
                done.append(json.load(f))
        else:
            todo.append((input_dir, output, name, keys[name], settings))
    results = list(done)
    if todo:
        if landmarks != "existing" and missing_reason():  # once, here, not in every worker
            raise SystemExit(f"error: {missing_reason()}")
        if workers <= 1:
            _init_worker(landmarks)
            stream = map(prepare_one, todo)
        else:
            pool = multiprocessing.get_context("spawn").Pool(
                workers, initializer=_init_worker, initargs=(landmarks,)
            )
            stream = pool.imap_unordered(prepare_one, todo)
        for result in _progress(stream, len(todo)):
            if result.get("skipped"):
                _say(f"skipping {result['message']}")
            if result.get("error"):
                _say(f"error: {result['error']}")
            results.append(result)
        if workers > 1:
            pool.close()
            pool.join()
    skipped = collections.Counter(r["skipped"] for r in results if r.get("skipped"))
    summary = {
        "videos_in": len(names),
        "resumed": len(done),
        "clips_out": sum(len(r["clips"]) for r in results),
        "skipped": {r: skipped[r] for r in SKIP_REASONS if skipped[r]},
        "errors": sorted(r["error"] for r in results if r.get("error")),
    }
    os.makedirs(output, exist_ok=True)
    _write_json(os.path.join(output, "prepare_summary.json"), summary)
    return summary


def format_summary(summary: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in summary["skipped"].items())
    line = (
        f"videos in {summary['videos_in']} ({summary['resumed']} done before), clips out "
        f"{summary['clips_out']}, skipped {sum(summary['skipped'].values())}"
    )
    line += f" ({reasons})" if reasons else ""
    return line + (f", errors {len(summary['errors'])}" if summary["errors"] else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.prepare_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--input", help="folder of videos (train/ and test/ inside)")
    parser.add_argument("--output", required=True, help="output folder (or .npz with --driving)")
    parser.add_argument("--driving", help="one driving video: write its landmark track only")
    parser.add_argument("--size", type=int, default=256, help="output side in pixels")
    parser.add_argument("--margin", type=float, default=0.4, help="crop margin around the face")
    parser.add_argument("--smooth_frames", type=int, default=9, help="crop smoothing window")
    parser.add_argument("--min_frames", type=int, default=8, help="shortest face track kept")
    parser.add_argument("--max_gap", type=int, default=4, help="faceless frames bridged")
    parser.add_argument("--landmarks", choices=sorted(_LANDMARKERS), default="facemesh")
    parser.add_argument(
        "--resample_fps",
        type=float,
        default=0.0,
        help="output frame rate; 0 keeps constant-rate videos and re-times variable-rate ones "
        "to their average rate, from the real timestamps",
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tfds_dir", help="also build the face_videos ArrayRecord shards here")
    parser.add_argument("--tfds_config", default="s256", help="face_videos config (frame size)")
    args = parser.parse_args(argv)
    if not args.resample_fps >= 0:
        raise SystemExit(f"error: --resample_fps: expected >= 0, got {args.resample_fps}")
    settings = CropSettings(
        args.size, args.margin, args.smooth_frames, args.min_frames, args.max_gap, args.resample_fps
    )
    if args.driving:
        if args.landmarks != "existing" and missing_reason():
            raise SystemExit(f"error: {missing_reason()}")
        try:
            landmarker = _LANDMARKERS[args.landmarks]()
            track = driving_landmarks(args.driving, settings, landmarker, progress=True)
        except (BadVideoError, ImportError, ValueError) as e:
            raise SystemExit(f"error: {e}") from None
        save_landmarks(args.output, track.landmarks_TLC, track.fps, track.layout)
        print(f"{args.output}: {len(track.landmarks_TLC)} frames of {track.layout} landmarks")
        return 0
    if not args.input or not os.path.isdir(args.input):
        raise SystemExit(f"error: --input: expected a folder of videos, got {args.input!r}")
    summary = prepare_folder(
        args.input, args.output, settings, landmarks=args.landmarks, workers=args.workers
    )
    print(format_summary(summary))
    if args.tfds_dir:
        from data_pipelines.tfds_face_videos import build

        print(f"wrote {build(args.output, args.tfds_dir, args.tfds_config)}")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
