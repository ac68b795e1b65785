"""A small CNN that regresses face landmarks from frames, for AKD where MediaPipe does not fit.

AKD needs one detector for output and driving frames alike. On rendered faces whose exact
landmarks are known, a regressor trained on those landmarks is that detector: it reads only
pixels, so it measures a generated frame the same way as a real one. This file is the model and
its training, independent of where the frames come from (`data_pipelines` supplies them):

- the network: frames resized to `work_size`, a 2x2 space-to-depth (lossless, and 4x cheaper
  than a full-resolution first layer), strided 3x3 convs with x/y coordinate channels down to
  4x4, then a dense head predicting `[L, 2]` (x, y in [0, 1] of width and height);
- `make_train_step`: a pure jitted `state, batch, key -> state, metrics` (optax Adam, L1);
- `fit` on arrays, `predict` on uint8 frames, and `save_regressor` / `load_regressor`:
  safetensors with the settings and a content digest in its metadata, written atomically.

Direct regression, not heatmaps: on 32 px synthetic faces, 1000 steps of a spatial soft-argmax
head (heatmaps at 16x16) reached 0.80 px held-out error, and 1000 steps of this one, at a third
of its compute, 0.31 px.
"""

import dataclasses
import functools
import hashlib
import json
import math
import os
import tempfile

import einops
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from anchored_jax.interop.weight_files import check_layout

FORMAT_TAG = "anchored-jax/landmark-regressor/v1"
_PREDICT_CHUNK = 256  # frames per forward pass; smaller calls use the next power of two


@dataclasses.dataclass(frozen=True)
class RegressorSettings:
    """What a regressor was built and trained with; saved beside its weights."""

    image_size: int  # side of the square frames it reads
    num_landmarks: int
    work_size: int = 32  # network input side (frames are resized): one cost at any frame size
    width: int = 32  # channels of the first stage, doubled at each halving
    hidden: int = 256  # dense head width
    batch_size: int = 32  # at equal frames seen, 32 gave 0.30 px held-out where 64 gave 0.31
    steps: int = 3000  # about 1.5 min on 2 CPU cores at work_size 32
    learning_rate: float = 1.5e-3  # Adam's peak, cosine-decayed to 0; 4e-3 ended 0.03 px worse
    # Per-channel colour jitter: held-out identities have other skin, hair and backgrounds;
    # it cut held-out AKD from 0.28 to 0.27 px at 32 px.
    colour_gain: float = 0.3  # gain drawn from [1 - g, 1 + g]
    colour_offset: float = 0.2  # offset drawn from [-o, o], in the [-1, 1] pixel range
    seed: int = 0  # initialisation, batch order and jitter

    def __post_init__(self):
        for name in ("image_size", "num_landmarks", "width", "hidden", "batch_size", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"regressor {name}: expected a positive integer, got {value!r}")
        ws = self.work_size
        if not isinstance(ws, int) or ws < 16 or ws & (ws - 1):
            raise ValueError(f"regressor work_size: expected a power of two >= 16, got {ws!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"regressor learning_rate: expected > 0, got {self.learning_rate}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RegressorSettings":
        return cls(**json.loads(text))


def _stage_channels(settings: RegressorSettings) -> list[int]:
    """Channels per resolution: work_size / 2 (after space-to-depth) halved down to 4."""
    halvings = int(math.log2(settings.work_size // 8))
    return [settings.width * 2**k for k in range(halvings + 1)]


class LandmarkRegressor(nnx.Module):
    """Frames `[N, work, work, 3]` scaled to [-1, 1] -> landmarks `[N, L, 2]` in [0, 1]."""

    def __init__(self, settings: RegressorSettings, *, rngs: nnx.Rngs):
        self.settings = settings
        channels = _stage_channels(settings)
        convs, c_in = [], 4 * 3 + 2  # a 2x2 cell's RGB plus its x, y
        for k, c in enumerate(channels):
            convs.append(nnx.Conv(c_in, c, (3, 3), strides=1 if k == 0 else 2, rngs=rngs))
            convs.append(nnx.Conv(c, c, (3, 3), rngs=rngs))
            c_in = c
        self.convs = nnx.List(convs)
        self.fc1 = nnx.Linear(4 * 4 * channels[-1], settings.hidden, rngs=rngs)
        self.fc2 = nnx.Linear(settings.hidden, settings.num_landmarks * 2, rngs=rngs)

    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        N, H, W, C = x_NHWC.shape
        size = self.settings.work_size
        assert (H, W, C) == (size, size, 3), f"expected [N, {size}, {size}, 3], got {x_NHWC.shape}"
        x_NhwD = einops.rearrange(x_NHWC, "n (h a) (w b) c -> n h w (a b c)", a=2, b=2)
        # Coordinate channels: a dense head on conv features must otherwise learn where it is.
        centres = (jnp.arange(size // 2, dtype=x_NHWC.dtype) + 0.5) / (size // 2) * 2 - 1
        xy_hw2 = jnp.stack(jnp.meshgrid(centres, centres, indexing="xy"), axis=-1)
        x = jnp.concatenate([x_NhwD, jnp.broadcast_to(xy_hw2, (N, *xy_hw2.shape))], axis=-1)
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))
        x = jax.nn.gelu(self.fc1(x.reshape(N, -1)))
        # +0.5: the untrained head starts at the frame centre rather than its corner.
        return self.fc2(x).reshape(N, self.settings.num_landmarks, 2) + 0.5


def work_frames(frames_NHWC: np.ndarray, work_size: int) -> np.ndarray:
    """uint8 frames resized (antialiased) to the network's side; unchanged if already that size.

    Training frames and measured frames both pass through here, so the network always sees
    the same preprocessing.
    """
    frames = np.asarray(frames_NHWC)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"landmark frames: expected uint8 RGB frames [N, H, W, 3], got {frames.dtype} "
            f"{frames.shape}"
        )
    if frames.shape[1:3] == (work_size, work_size):
        return frames
    shape = (len(frames), work_size, work_size, 3)
    resized = jax.image.resize(jnp.asarray(frames, jnp.float32), shape, "linear", antialias=True)
    return np.asarray(jnp.clip(jnp.round(resized), 0, 255)).astype(np.uint8)


def _unit_range(frames_NHWC: jax.Array) -> jax.Array:
    return frames_NHWC.astype(jnp.float32) / 127.5 - 1.0


def _jitter_colours(key: jax.Array, x_NHWC: jax.Array, gain: float, offset: float) -> jax.Array:
    k_gain, k_offset = jax.random.split(key)
    shape = (x_NHWC.shape[0], 1, 1, 3)
    g = jax.random.uniform(k_gain, shape, minval=1 - gain, maxval=1 + gain)
    o = jax.random.uniform(k_offset, shape, minval=-offset, maxval=offset)
    return jnp.clip(x_NHWC * g + o, -1.0, 1.0)


@flax.struct.dataclass
class RegressorState:
    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation):
    """The jitted pure step `(state, frames_NHWC uint8, landmarks_NL2, key) -> state, metrics`."""

    def loss_fn(params, frames_NHWC, landmarks_NL2, key):
        model = nnx.merge(graphdef, params)
        s = model.settings
        x_NHWC = _jitter_colours(key, _unit_range(frames_NHWC), s.colour_gain, s.colour_offset)
        # L1, not L2: better for landmark regression (Feng et al. 2018, Wing loss, Sec. 3).
        return jnp.abs(model(x_NHWC) - landmarks_NL2).mean()

    def train_step(state: RegressorState, frames_NHWC, landmarks_NL2, key):
        loss, grads = jax.value_and_grad(loss_fn)(state.params, frames_NHWC, landmarks_NL2, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return RegressorState(state.step + 1, params, opt_state), {"l1": loss}

    return jax.jit(train_step, donate_argnums=0)


def _check_landmarks(landmarks_NLC, num_frames: int, num_landmarks: int) -> np.ndarray:
    landmarks = np.asarray(landmarks_NLC, np.float32)
    if landmarks.shape[:2] != (num_frames, num_landmarks) or landmarks.shape[-1] not in (2, 3):
        raise ValueError(
            f"landmarks: expected [{num_frames}, {num_landmarks}, 2 or 3], got {landmarks.shape}"
        )
    if not np.isfinite(landmarks[..., :2]).all():
        raise ValueError("landmarks: training targets must all be finite")
    return landmarks[..., :2]


@functools.partial(nnx.jit, static_argnums=0)  # one compile: eager init compiles every op
def _new_regressor(settings: RegressorSettings) -> LandmarkRegressor:
    # rbg keys: the initialisers compile several times faster on CPU than with threefry.
    return LandmarkRegressor(settings, rngs=nnx.Rngs(jax.random.key(settings.seed, impl="rbg")))


def fit(
    frames_NHWC: np.ndarray, landmarks_NLC: np.ndarray, settings: RegressorSettings
) -> tuple[LandmarkRegressor, np.ndarray]:
    """Trains a fresh regressor on `frames` (at image_size or work_size); returns it and the
    per-step L1 loss (image fractions). Deterministic for a given seed."""
    sizes = {settings.image_size, settings.work_size}
    if np.ndim(frames_NHWC) != 4 or np.shape(frames_NHWC)[1] not in sizes:
        raise ValueError(
            f"training frames: expected [N, S, S, 3] with S in {sorted(sizes)}, got "
            f"{np.shape(frames_NHWC)}"
        )
    frames = work_frames(frames_NHWC, settings.work_size)
    targets_NL2 = _check_landmarks(landmarks_NLC, len(frames), settings.num_landmarks)
    graphdef, params = nnx.split(_new_regressor(settings))
    tx = optax.adam(optax.cosine_decay_schedule(settings.learning_rate, settings.steps))
    state = RegressorState(jnp.zeros((), jnp.int32), params, tx.init(params))
    train_step = make_train_step(graphdef, tx)
    order = np.random.default_rng(settings.seed)
    key = jax.random.key(settings.seed)
    losses = []
    for step in range(settings.steps):
        rows = order.integers(0, len(frames), settings.batch_size)
        state, metrics = train_step(
            state, frames[rows], targets_NL2[rows], jax.random.fold_in(key, step)
        )
        losses.append(metrics["l1"])  # kept on device: reading each one would stall the loop
    return nnx.merge(graphdef, state.params), np.asarray(jax.device_get(losses), np.float32)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef: nnx.GraphDef, params: nnx.State, frames_NHWC: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, params)(_unit_range(frames_NHWC))


def predict(model: LandmarkRegressor, frames_NHWC: np.ndarray) -> np.ndarray:
    """float32 `[N, L, 2]` landmarks (x, y in [0, 1]) of uint8 frames `[N, S, S, 3]`."""
    s = model.settings
    frames = np.asarray(frames_NHWC)
    if frames.ndim != 4 or frames.shape[1:3] != (s.image_size, s.image_size):
        raise ValueError(
            f"landmark frames: this regressor reads [N, {s.image_size}, {s.image_size}, 3] "
            f"frames, got {frames.shape}"
        )
    graphdef, params = nnx.split(model)
    out = []
    for start in range(0, len(frames), _PREDICT_CHUNK):
        chunk = work_frames(frames[start : start + _PREDICT_CHUNK], s.work_size)
        padded = min(_PREDICT_CHUNK, 1 << (len(chunk) - 1).bit_length())  # few compiled shapes
        chunk = np.concatenate([chunk, np.zeros((padded - len(chunk), *chunk.shape[1:]), np.uint8)])
        out.append(np.asarray(_forward(graphdef, params, chunk))[: len(frames) - start])
    empty = np.zeros((0, s.num_landmarks, 2), np.float32)
    return np.concatenate(out) if out else empty


def _digest(tensors: dict[str, np.ndarray], settings_json: str) -> str:
    """sha256 of the settings and every tensor: safetensors checks lengths, not the bytes."""
    h = hashlib.sha256(settings_json.encode())
    for name in sorted(tensors):
        t = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{t.dtype.str}|{t.shape}|".encode())
        h.update(t.tobytes())
    return h.hexdigest()


def _flat_params(model: LandmarkRegressor) -> dict[str, np.ndarray]:
    params = nnx.state(model, nnx.Param)
    return {
        ".".join(str(p) for p in key_path): np.ascontiguousarray(jax.device_get(var[...]))
        for key_path, var in nnx.to_flat_state(params)
    }


def save_regressor(path: str, model: LandmarkRegressor, metadata: dict[str, str] | None = None):
    """Writes the weights, settings and `metadata` (strings) atomically to `path`."""
    from safetensors.numpy import save

    tensors = _flat_params(model)
    settings_json = model.settings.to_json()
    meta = {**(metadata or {}), "format": FORMAT_TAG, "settings": settings_json}
    meta["digest"] = _digest(tensors, settings_json)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=".regressor-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(save(tensors, metadata=meta))
        os.replace(tmp_path, path)  # readers see the old file or the whole new one
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def load_regressor(path: str) -> tuple[LandmarkRegressor, dict[str, str]]:
    """`(model, metadata)` from `save_regressor`'s file; a damaged file raises one ValueError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT_TAG:
        raise ValueError(f"{path}: format is {metadata.get('format')!r}, expected {FORMAT_TAG!r}")
    try:
        settings = RegressorSettings.from_json(metadata["settings"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: unreadable regressor settings ({e})") from e
    if metadata.get("digest") != _digest(tensors, metadata["settings"]):
        raise ValueError(f"{path}: content digest does not match (the file is damaged)")
    model = nnx.eval_shape(lambda: LandmarkRegressor(settings, rngs=nnx.Rngs(0)))
    graphdef, params = nnx.split(model)
    flat = nnx.to_flat_state(params)
    names = {".".join(str(p) for p in key_path): var for key_path, var in flat}
    check_layout(
        path, {k: v.shape for k, v in names.items()}, {k: v.shape for k, v in tensors.items()}
    )
    for name, var in names.items():
        var.set_value(jnp.asarray(tensors[name], var.dtype))
    return nnx.merge(graphdef, params), metadata
