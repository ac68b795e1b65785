"""A real-encoder fixture dataset: good videos in several codecs and containers, and broken ones.

Every frame carries its own index as 8 black/white bars across the middle of the frame, so a
test can read back which frame it got after lossy encoding, cropping and resizing. The broken
files are made the way they occur: cut short, emptied, misnamed, corrupted in place.
"""

import os
import types

import numpy as np
import pytest

from data_pipelines.landmark_files import save_landmarks
from data_pipelines.video_writing import write_video

CODE_BITS = 8
FRAMES = 24
FPS = 25.0
# Good training videos: path under train/ -> (extension codec override, H, W, rotation, gray).
GOOD_TRAIN = {
    "id00001/clipA/00001.mp4": dict(codec="libx264", size=(64, 64)),
    "id00001/clipA/00002.webm": dict(codec="libvpx-vp9", size=(64, 64)),
    "id00002/clipB/00001.mkv": dict(codec="ffv1", size=(64, 64)),
    "id00002/clipB/00002.avi": dict(codec="mpeg4", size=(64, 64)),
    "id00003/clipC/00001.mov": dict(codec="mjpeg", size=(64, 64), pix_fmt="yuvj420p"),
    "id00003/clipC/rotated.mp4": dict(codec="libx264", size=(80, 48), rotation=90),
    "id00004/clipD/gray.mkv": dict(codec="ffv1", size=(64, 64), pix_fmt="gray"),
    "id00004/clipD/odd.avi": dict(codec="mpeg4", size=(67, 91)),
    "id00005/clipE/hevc.mkv": dict(codec="libx265", size=(64, 64)),
}
GOOD_TEST = {
    "id00100/clipT/00001.mp4": dict(codec="libx264", size=(64, 64)),
    "id00101/clipU/00001.webm": dict(codec="libvpx", size=(64, 64)),
}
# Broken training files -> the reason a scan gives (corrupt_mid needs a decoding scan).
BAD_TRAIN = {
    "bad/truncated.mp4": "unreadable",  # cut in half; its index (moov) was at the end
    "bad/truncated_faststart.mp4": "truncated",  # index first, last frames cut off
    "bad/empty.mp4": "empty_file",
    "bad/not_a_video.mp4": "unreadable",
    "bad/short.mp4": "too_short",
    "bad/vfr.mkv": "variable_frame_rate",
    "bad/tenbit.mp4": "high_bit_depth",
    "bad/alpha.mov": "alpha_channel",
    "bad/corrupt_mid.mp4": "corrupt_frame",
    "bad/no_landmarks.mp4": "no_landmarks",
}


def coded_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: moving colour gradients, and frame t's index in bars mid-frame."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 215, 3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    side = min(height, width)
    x0, cy = (width - side) // 2, height // 2
    bar = side // CODE_BITS
    for t in range(num_frames):
        for c in range(3):
            wave = np.sin((xx + 2 * t) / (7 + 3 * c) + yy / 11 + base[c])
            frames[t, :, :, c] = np.clip(base[c] + 40 * wave, 0, 255)
        for i in range(CODE_BITS):  # Bars tile the centred square exactly, whatever its side.
            value = 255 if (t >> i) & 1 else 0
            a, b = x0 + round(i * side / CODE_BITS), x0 + round((i + 1) * side / CODE_BITS)
            frames[t, cy - bar : cy + bar, a:b] = value
    return frames


def read_codes(frames_KHWC: np.ndarray) -> np.ndarray:
    """The frame index written by `coded_frames`, from square frames (uint8 or [-1, 1])."""
    frames_KHWC = np.asarray(frames_KHWC, np.float32)
    if frames_KHWC.max() <= 1.0:
        frames_KHWC = (frames_KHWC + 1) * 127.5
    size = frames_KHWC.shape[-2]
    centres = ((np.arange(CODE_BITS) + 0.5) * size / CODE_BITS).astype(int)
    bits = frames_KHWC[..., size // 2, centres, :].mean(-1) > 127.5
    return (bits * (1 << np.arange(CODE_BITS))).sum(-1)


def fixture_landmarks(num_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 0.8, (num_frames, 68, 3)).astype(np.float32)


def _write_good(path: str, spec: dict, seed: int, num_frames: int = FRAMES) -> np.ndarray:
    height, width = spec["size"]
    rotation = spec.get("rotation", 0)
    upright = coded_frames(num_frames, height, width, seed)
    # Store the frames turned the other way, so applying the display rotation restores them.
    stored = np.ascontiguousarray(np.rot90(upright, k=-rotation // 90, axes=(1, 2)))
    write_video(
        path, stored, FPS, codec=spec["codec"], pix_fmt=spec.get("pix_fmt"), rotation=rotation
    )
    save_landmarks(
        os.path.splitext(path)[0] + ".npz", fixture_landmarks(num_frames, seed), FPS, "synthetic68"
    )
    return upright


def _overwrite_packet(path: str, which: int) -> None:
    """Fills one packet's bytes in place with 0xFF: a frame that cannot be decoded."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        packets = sorted((p.pos, p.size) for p in container.demux(stream) if p.size)
    pos, size = packets[which]
    with open(path, "r+b") as f:
        f.seek(pos)
        f.write(b"\xff" * size)


def _write_bad(root: str) -> None:
    bad = os.path.join(root, "train", "bad")
    os.makedirs(bad, exist_ok=True)
    frames = coded_frames(FRAMES, 64, 64, seed=99)
    landmarks = fixture_landmarks(FRAMES, 99)

    def path(name):
        return os.path.join(bad, name)

    def with_landmarks(name, n=FRAMES):
        save_landmarks(
            path(name)[: -len(os.path.splitext(name)[1])] + ".npz",
            landmarks[:n],
            FPS,
            "synthetic68",
        )

    write_video(path("truncated.mp4"), frames, FPS)
    write_video(
        path("truncated_faststart.mp4"), frames, FPS, container_options={"movflags": "faststart"}
    )
    for name, keep in (("truncated.mp4", 0.5), ("truncated_faststart.mp4", 0.9)):
        with open(path(name), "r+b") as f:
            f.truncate(int(os.path.getsize(path(name)) * keep))
    open(path("empty.mp4"), "wb").close()
    with open(path("not_a_video.mp4"), "w") as f:
        f.write("these are notes about the shoot, not a video\n" * 40)
    write_video(path("short.mp4"), frames[:2], FPS)
    vfr_ms = np.cumsum([0] + [40] * 8 + [80] * 8 + [20] * 7)
    write_video(path("vfr.mkv"), frames, FPS, codec="libx264", pts_T=vfr_ms)
    write_video(path("tenbit.mp4"), frames, FPS, pix_fmt="yuv420p10le")
    write_video(path("alpha.mov"), frames, FPS, codec="prores_ks", pix_fmt="yuva444p10le")
    write_video(path("corrupt_mid.mp4"), frames, FPS, options={"x264-params": "bframes=0"})
    _overwrite_packet(path("corrupt_mid.mp4"), FRAMES // 2)
    write_video(path("no_landmarks.mp4"), frames, FPS)
    for name in (
        "truncated.mp4",
        "truncated_faststart.mp4",
        "empty.mp4",
        "not_a_video.mp4",
        "vfr.mkv",
        "tenbit.mp4",
        "alpha.mov",
        "corrupt_mid.mp4",
    ):
        with_landmarks(name)
    with_landmarks("short.mp4", 2)


@pytest.fixture(scope="session")
def face_videos(tmp_path_factory) -> types.SimpleNamespace:
    """`root/{train,test}/...` videos with landmark files (see GOOD_* and BAD_TRAIN), and the
    helpers and constants of this module, as test files cannot import a conftest."""
    root = str(tmp_path_factory.mktemp("face_videos"))
    for split, specs in (("train", GOOD_TRAIN), ("test", GOOD_TEST)):
        for i, (name, spec) in enumerate(sorted(specs.items())):
            path = os.path.join(root, split, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _write_good(path, spec, seed=i + (100 if split == "test" else 0))
    _write_bad(root)
    return types.SimpleNamespace(
        root=root,
        good_train=GOOD_TRAIN,
        good_test=GOOD_TEST,
        bad_train=BAD_TRAIN,
        frames=FRAMES,
        fps=FPS,
        coded_frames=coded_frames,
        read_codes=read_codes,
        landmarks=fixture_landmarks,
    )


@pytest.fixture(scope="session")
def face_models() -> str:
    """The face detector and FaceMesh files (data_pipelines.face_models): installed by the setup
    step; installed here from the package index when missing, else the test is skipped."""
    from data_pipelines import face_models as fm

    if fm.missing_reason():
        try:
            fm.download_and_install()
        except Exception as e:  # noqa: BLE001  (no index reachable: nothing to test with)
            pytest.skip(f"face models not installed and not downloadable ({e})")
    return fm.cache_dir()
