r"""LEO's animator: moves a source image with the motion of a driving video.

  python -m launch.animate --checkpoint runs/animator_tiny --source face.png \
      --driving driving.mp4 --mode relative --out out.mp4
  python -m launch.animate --checkpoint runs/animator_tiny --driving synthetic:0 --frames 64

- `--checkpoint`: an animator training workdir (`launch.train --config configs/animator.py`),
  or a directory written by `python -m launch.import_weights lia` (LIA's weights);
- `--source`: an image of the animator's frame size, or `synthetic:<id>` (frame 0 of a held-out
  synthetic video); omitted with a synthetic driving video, that video's frame 0;
- `--driving`: a video file, a folder of frame images (file-name order), `synthetic:<id>`, or
  a motion-code file (`.npz` with `codes` [1, T, M] or [T, M], as `launch.generate` writes);
- `--mode`: `relative` renders z_s + Q(alpha_d(t) - alpha_d(0) + alpha_s) (the driving motion
  relative to its first frame, on top of the source's own pose); `absolute` renders
  z_s + Q alpha_d(t) (the driving frame's pose itself).

Editing: to keep a video's motion and change its content, edit its first frame (or take
another face) and pass it as `--source` with the video as `--driving` in relative mode; the
motion codes are the video's, only the appearance is new.

Writes `--out`, `<out>_side_by_side.mp4` (source | driving | output, when driving frames
exist) and `<out>_codes.npz` (the driving motion codes, [1, T, M]).
"""

from __future__ import annotations

import functools
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from flax import nnx  # noqa: E402
from PIL import Image  # noqa: E402

from data_pipelines.motion_codes import write_code_file  # noqa: E402
from data_pipelines.video_writing import write_video  # noqa: E402
from launch.reenact import (  # noqa: E402
    SYNTHETIC_PREFIX,
    ReenactError,
    held_out_video,
    load_source_image,
    progress_bar,
    to_display,
    to_unit_range,
)

MODES = ("relative", "absolute")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
CONFIG_FILE, PARAMS_DIR = "config.json", "ema_params"  # the inference-checkpoint layout


class AnimateError(ReenactError):
    """A bad input to animation or generation; one line naming the flag or file."""


def load_run_params(path: str, task: str, flag: str):
    """`(config, graphdef, params)` of a LEO part: the animator's generator or the LMDM's EMA.

    `path` is a training workdir (latest checkpoint) or an inference-checkpoint directory
    (`config.json` + `ema_params/`, as `launch.import_weights lia` writes for the animator).
    """
    import json

    import optax
    import orbax.checkpoint as ocp

    from anchored_jax.training.checkpointing import RunCheckpoints
    from anchored_jax.training.leo_animator_step import init_animator
    from anchored_jax.training.leo_lmdm_loop import init_lmdm

    def build(config):
        """(graphdef, abstract train state, its part we keep), traced only: no weights made."""
        graphdef = []

        def init():
            if task == "animator":
                graphs, state = init_animator(config, 0, optax.adam(1e-3), optax.adam(1e-3))
                graphdef.append(graphs.gen)
                return state
            lmdm_graphdef, _, state = init_lmdm(config, 0)
            graphdef.append(lmdm_graphdef)
            return state

        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        state = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
            jax.eval_shape(init),
        )
        pick = (lambda s: s.gen_params) if task == "animator" else (lambda s: s.ema_params)
        return graphdef[0], state, pick

    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise AnimateError(f"{flag} {path}: no such directory")
    if os.path.isdir(os.path.join(path, PARAMS_DIR)):
        with open(os.path.join(path, CONFIG_FILE)) as f:
            config = ml_collections.ConfigDict(json.load(f))
        restored = None
    else:
        if not os.path.isdir(os.path.join(path, "checkpoints")):
            raise AnimateError(
                f"{flag} {path}: expected a {task} training workdir (with checkpoints/) or a "
                f"directory with {CONFIG_FILE} and {PARAMS_DIR}/"
            )
        options = ml_collections.ConfigDict(dict(max_to_keep=1, async_save=False))
        probe = RunCheckpoints(path, options)
        step = probe.latest_step()
        if step is None:
            probe.close()
            raise AnimateError(f"{flag} {path}: no checkpoint (expected a {task} training run)")
        config = ml_collections.ConfigDict(probe.restore_config(step))
        restored = probe
    if config.get("task") != task:
        raise AnimateError(f"{flag} {path}: expected a {task} run, got task {config.get('task')!r}")
    graphdef, state, pick = build(config)
    if restored is None:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore(os.path.join(path, PARAMS_DIR), pick(state))
    else:
        params = pick(restored.restore(step, state))
        restored.close()
    return config, graphdef, params


def _check_size(frames_THWC: np.ndarray, size: int, where: str) -> np.ndarray:
    if frames_THWC.shape[1:3] != (size, size):
        raise AnimateError(
            f"--driving {where}: expected {size}x{size} frames (the animator's frame size), "
            f"got {frames_THWC.shape[2]}x{frames_THWC.shape[1]}"
        )
    return to_unit_range(frames_THWC)


def load_driving_frames(spec: str, config, frames: int | None):
    """`(frames_THWC in [-1, 1] or None, codes_TM or None, fps)` of the driving input."""
    size = config.data.image_size
    if spec.startswith(SYNTHETIC_PREFIX):
        try:
            video_id = int(spec[len(SYNTHETIC_PREFIX) :])
        except ValueError:
            raise AnimateError(f"--driving: expected synthetic:<int>, got {spec!r}") from None
        T = frames or 64
        video = held_out_video(config, video_id, T)
        return to_unit_range(video.read_frames(video_id, np.arange(T))), None, video[video_id].fps
    if not os.path.exists(spec):
        raise AnimateError(f"--driving {spec}: no such file or folder")
    if os.path.isdir(spec):
        names = sorted(n for n in os.listdir(spec) if n.lower().endswith(FRAME_EXTENSIONS))
        if not names:
            raise AnimateError(f"--driving {spec}: expected .png/.jpg frames in the folder")
        names = names[:frames] if frames else names
        try:
            images = [np.asarray(Image.open(os.path.join(spec, n)).convert("RGB")) for n in names]
        except OSError as e:
            raise AnimateError(f"--driving {spec}: unreadable frame ({e})") from None
        if len({im.shape for im in images}) != 1:
            raise AnimateError(f"--driving {spec}: frames of different sizes")
        return _check_size(np.stack(images), size, spec), None, 25.0
    if spec.endswith(".npz"):
        from data_pipelines.motion_codes import read_code_file

        codes = np.asarray(read_code_file(spec), np.float32)  # one-line errors of its own
        codes = codes[0] if codes.ndim == 3 else codes
        if codes.ndim != 2 or codes.shape[1] != config.model.motion_dim:
            raise AnimateError(
                f"--driving {spec}: expected codes [T, {config.model.motion_dim}], got "
                f"{codes.shape}"
            )
        return None, codes[:frames] if frames else codes, 25.0
    from data_pipelines.video_decoding import decode_frames, probe_video

    probe = probe_video(spec)  # BadVideoError (a ValueError) names the file
    T = min(frames or probe.num_frames, probe.num_frames)
    return _check_size(decode_frames(probe, np.arange(T)), size, spec), None, probe.fps


@functools.partial(jax.jit, static_argnums=0)
def _encode(graphdef, params, frames_BHWC):
    return nnx.merge(graphdef, params).encode(frames_BHWC)


@functools.partial(jax.jit, static_argnums=0)
def _render(graphdef, params, z_1D, feats, alpha_BM, alpha_start_M, alpha_source_M):
    gen = nnx.merge(graphdef, params)
    b = alpha_BM.shape[0]
    tile = lambda x: jnp.broadcast_to(x, (b,) + x.shape[1:])  # noqa: E731
    relative = dict(
        alpha_start_BM=jnp.broadcast_to(alpha_start_M, alpha_BM.shape),
        alpha_source_BM=jnp.broadcast_to(alpha_source_M, alpha_BM.shape),
    )
    return gen.render(tile(z_1D), jax.tree.map(tile, feats), alpha_BM, **relative)


def make_animator_fns(graphdef, params):
    """`encode(frames_BHWC) -> (z, feats, alpha)` and
    `render(z_1D, feats, alpha_BM, alpha_start_M, alpha_source_M) -> frames` (relative form;
    zero start and source codes give absolute frames). Compiled once per graph and shape."""
    return (
        functools.partial(_encode, graphdef, params),
        functools.partial(_render, graphdef, params),
    )


def render_codes(fns, source_HWC, codes_TM, *, mode, batch_size=16, progress=None):
    """Frames `[T, H, W, 3]` of the source moved by codes (relative to codes[0] or absolute)."""
    if mode not in MODES:
        raise AnimateError(f"--mode: expected one of {list(MODES)}, got {mode!r}")
    encode, render = fns
    z_1D, feats, alpha_s = encode(jnp.asarray(source_HWC, jnp.float32)[None])
    codes_TM = jnp.asarray(codes_TM, jnp.float32)
    if mode == "relative":
        start, source = codes_TM[0], alpha_s[0]
    else:  # alpha - 0 + 0: the codes themselves
        start = source = jnp.zeros_like(codes_TM[0])
    out = []
    for i in range(0, codes_TM.shape[0], batch_size):
        batch = codes_TM[i : i + batch_size]
        pad = batch_size - batch.shape[0]  # one compiled shape for every batch
        padded = jnp.concatenate([batch, jnp.repeat(batch[-1:], pad, 0)]) if pad else batch
        out.append(np.asarray(render(z_1D, feats, padded, start, source))[: batch.shape[0]])
        if progress is not None:
            progress(batch.shape[0])
    return np.concatenate(out)


def encode_codes(fns, frames_THWC, batch_size=16):
    """Motion codes alpha `[T, M]` of frames, by the animator's encoder."""
    encode = fns[0]
    out = []
    for i in range(0, frames_THWC.shape[0], batch_size):
        batch = jnp.asarray(frames_THWC[i : i + batch_size])
        pad = batch_size - batch.shape[0]
        padded = jnp.concatenate([batch, jnp.repeat(batch[-1:], pad, 0)]) if pad else batch
        out.append(np.asarray(encode(padded)[2])[: batch.shape[0]])
    return np.concatenate(out)


def write_animation(out, video_THWC, fps, display, panels_THWC=()):
    """Writes the video and, with panels, `<out>_side_by_side.mp4`; returns the paths."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    generated = to_display(video_THWC, display)
    write_video(out, generated, fps)
    paths = [out]
    if len(panels_THWC):
        side = [np.broadcast_to(to_display(p, display), generated.shape) for p in panels_THWC]
        paths.append(f"{os.path.splitext(out)[0]}_side_by_side.mp4")
        write_video(paths[-1], np.concatenate(side + [generated], axis=2), fps)
    return paths


def animate(
    checkpoint: str,
    driving: str,
    out: str,
    *,
    source: str | None = None,
    mode: str = "relative",
    frames: int | None = None,
    batch_size: int = 16,
    display: int = 128,
    loaded=None,
) -> dict:
    """Runs one animation end to end; returns the paths, the frames and the driving codes."""
    if mode not in MODES:
        raise AnimateError(f"--mode: expected one of {list(MODES)}, got {mode!r}")
    config, graphdef, params = loaded or load_run_params(checkpoint, "animator", "--checkpoint")
    driving_THWC, codes_TM, fps = load_driving_frames(driving, config, frames)
    if source is None:
        if driving_THWC is None or not driving.startswith(SYNTHETIC_PREFIX):
            raise AnimateError("--source: needed unless --driving is a synthetic video")
        source_HWC = driving_THWC[0]
    else:
        source_HWC = load_source_image(source, config)
    fns = make_animator_fns(graphdef, params)
    start = time.perf_counter()
    if codes_TM is None:
        codes_TM = encode_codes(fns, driving_THWC, batch_size)
    bar, _ = progress_bar(len(codes_TM), f"animate {mode} T={len(codes_TM)}")
    try:
        video_THWC = render_codes(
            fns, source_HWC, codes_TM, mode=mode, batch_size=batch_size, progress=bar.update
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    panels = [source_HWC[None]] + ([] if driving_THWC is None else [driving_THWC])
    paths = write_animation(out, video_THWC, fps, display, panels)
    codes_path = f"{os.path.splitext(out)[0]}_codes.npz"
    write_code_file(codes_path, np.asarray(codes_TM)[None])
    return dict(paths=paths + [codes_path], seconds=seconds, video=video_THWC, codes=codes_TM)


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "Animator workdir or imported LIA directory.")
    flags.DEFINE_string("source", None, "Source image file, or synthetic:<held-out id>.")
    flags.DEFINE_string("driving", None, "Video file, frame folder, codes .npz, synthetic:<id>.")
    flags.DEFINE_string("mode", "relative", "relative | absolute.")
    flags.DEFINE_integer("frames", None, "Frames to animate (default: all driving frames).")
    flags.DEFINE_integer("batch_size", 16, "Frames rendered per generator call.")
    flags.DEFINE_string("out", "animate.mp4", "Output mp4 path.")
    flags.DEFINE_integer("display_size", 128, "Side of each panel in the written videos.")


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keeps orbax's restore chatter off the terminal
    FLAGS = flags.FLAGS
    try:
        if not FLAGS.checkpoint or not FLAGS.driving:
            raise AnimateError("--checkpoint and --driving are required")
        result = animate(
            FLAGS.checkpoint, FLAGS.driving, FLAGS.out, source=FLAGS.source, mode=FLAGS.mode,
            frames=FLAGS.frames, batch_size=FLAGS.batch_size, display=FLAGS.display_size,
        )  # fmt: skip
    except (ValueError, OSError) as e:  # AnimateError, BadVideoError, unreadable files.
        sys.exit(f"error: {e}")
    n = len(result["codes"])
    print(f"wrote {', '.join(result['paths'])}: {n} frames in {result['seconds']:.1f} s")


if __name__ == "__main__":
    define_flags()
    app.run(main)
