"""LEO's animator (phase 1) as a task of the training loop: generator and discriminator trained
on (source, driving) frame pairs, evaluated by self-reconstruction of held-out videos.

The step is LEO's `make_train_step` (anchored_jax/training/leo_animator_step.py), wrapped so
that it reads and writes the loop's one `TrainState`: `params` and `opt_state` hold the two
networks as {"gen", "disc"}, and there is no EMA. The frozen VGG19 parameters of the
perceptual loss and the landmark regressor of the keypoint loss come in as the step's
`frozen` argument. Evaluation: frame 0 of each held-out video is the source and every frame
drives it, reported against the copy-source baseline
(predicting frame 0 everywhere), and drawn as a figure. When the launcher supplies exact
landmarks and a landmark extractor with the held-out videos (synthetic faces with
`logging.eval_akd`), AKD is reported too: the extractor's landmarks of each rendered frame
against the exact landmarks of the driving frame, in pixels.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from einops import rearrange

from anchored_jax.training.config_checks import validate_animator_config
from anchored_jax.training.leo_animator_step import (
    AnimatorState,
    init_animator,
    make_optimizers,
    make_reconstruction_step,
    make_train_step,
)
from anchored_jax.training.sample_grid import to_uint8
from anchored_jax.training.train_state import TrainState, create_train_state, param_count

BATCH_RANKS = {"source_BHWC": 4, "driving_BHWC": 4, "landmarks_B2L2": 4}


def reconstruction_figure(video_BTHWC: np.ndarray, recon_BTHWC: np.ndarray) -> np.ndarray:
    """Rows per video: real frames, self-reconstruction, copy-source. uint8 `[3B*H, T*W, 3]`."""
    copy = np.broadcast_to(video_BTHWC[:, :1], video_BTHWC.shape)
    rows_RBTHWC = np.stack([to_uint8(video_BTHWC), to_uint8(recon_BTHWC), to_uint8(copy)])
    return rearrange(rows_RBTHWC, "r b t h w c -> (b r h) (t w) c")


def evaluate_reconstruction(reconstruct, gen_params, videos_BTHWC, batch_size=4):
    """Mean self-reconstruction metrics over the held-out videos, and the reconstructions."""
    sums, recons = {}, []
    n = 0
    for start in range(0, len(videos_BTHWC), batch_size):
        chunk = videos_BTHWC[start : start + batch_size]
        recon, metrics = reconstruct(gen_params, jnp.asarray(chunk))
        recons.append(np.asarray(recon))
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v) * len(chunk)
        n += len(chunk)
    return {k: v / n for k, v in sums.items()}, np.concatenate(recons)


def keypoint_distance_px(extract, video_BTHWC: np.ndarray, landmarks_BTL2: np.ndarray) -> float:
    """AKD over frames 1.. (frame 0 is the source): the mean pixel distance between the
    landmarks `extract` (uint8 `[N, S, S, 3]` -> `[N, L, 2]` in [0, 1]) finds and the exact ones.
    """
    B, T, S = video_BTHWC.shape[:3]
    assert landmarks_BTL2.shape[:2] == (B, T), (landmarks_BTL2.shape, video_BTHWC.shape)
    frames_NHWC = to_uint8(np.asarray(video_BTHWC[:, 1:]).reshape(-1, *video_BTHWC.shape[2:]))
    found_BTL2 = np.asarray(extract(frames_NHWC)).reshape(B, T - 1, -1, 2)
    distance_BTL = np.sqrt(np.square((found_BTL2 - landmarks_BTL2[:, 1:]) * S).sum(-1))
    return float(distance_BTL.mean())


def generator_params(state: TrainState):
    """The generator's parameters of an animator train state (what inference needs)."""
    return state.params["gen"]


class AnimatorTask:
    name = "animator"
    ema_decay = None
    batch_ranks = BATCH_RANKS
    sample_every_steps = None  # the reconstruction figure comes with each evaluation

    def __init__(
        self, config: ml_collections.ConfigDict, *, validate: bool = True, keypoint_graph=None
    ):
        """`keypoint_graph`: the graph of the keypoint loss's frozen landmark regressor (its
        parameters come with every step in `frozen`); needed when `losses.keypoint_weight > 0`.
        """
        if validate:
            validate_animator_config(config)
        if config.losses.get("keypoint_weight", 0.0) > 0 and keypoint_graph is None:
            raise ValueError(
                "losses.keypoint_weight > 0: the animator task needs the landmark regressor's "
                "graph (keypoint_graph; launch/train_animator.py builds it)"
            )
        self.config = config
        self.eval_every_steps = config.logging.eval_every_steps
        self.gen_tx, self.disc_tx = make_optimizers(config.training)
        self.graphs, _ = jax.eval_shape(
            lambda: init_animator(config, config.seed, self.gen_tx, self.disc_tx)
        )
        self.graphs = self.graphs.replace(keypoints=keypoint_graph)
        self._leo_step = make_train_step(
            self.graphs, self.gen_tx, self.disc_tx, config.losses, seed=config.seed
        )
        self._reconstruct = jax.jit(make_reconstruction_step(self.graphs))

    def init(self) -> TrainState:
        _, s = init_animator(self.config, self.config.seed, self.gen_tx, self.disc_tx)
        return create_train_state(
            {"gen": s.gen_params, "disc": s.disc_params},
            None,
            opt_state={"gen": s.gen_opt_state, "disc": s.disc_opt_state},
            with_ema=False,
        )

    def step(self, state: TrainState, batch, key, frozen):
        """`frozen`: None, or {"vgg": VGG19 params, "keypoints": landmark regressor params},
        either None when its loss term is off."""
        del key  # the animator's step draws no randomness
        frozen = frozen or {}
        leo_state = AnimatorState(
            step=state.step,
            gen_params=state.params["gen"],
            disc_params=state.params["disc"],
            gen_opt_state=state.opt_state["gen"],
            disc_opt_state=state.opt_state["disc"],
        )
        new, metrics = self._leo_step(leo_state, batch, frozen.get("vgg"), frozen.get("keypoints"))
        return state.replace(
            params={"gen": new.gen_params, "disc": new.disc_params},
            opt_state={"gen": new.gen_opt_state, "disc": new.disc_opt_state},
        ), metrics

    def train_key(self) -> jax.Array:
        return jax.random.key(self.config.seed)

    def describe(self, state: TrainState) -> tuple[str, dict]:
        n_gen, n_disc = param_count(state.params["gen"]), param_count(state.params["disc"])
        line = f"Animator: generator {n_gen:,}, discriminator {n_disc:,} parameters"
        return line, {"gen_params": n_gen, "disc_params": n_disc}

    def evaluate(self, state: TrainState, eval_data, step: int, setup):
        """`eval_data`: held-out videos `[V, T, H, W, 3]`, or a dict of them (`videos_BTHWC`)
        with what AKD needs: their exact landmarks (`landmarks_BTL2`, x and y in [0, 1]) and a
        landmark extractor (`extract_landmarks`, uint8 frames -> `[N, L, 2]`)."""
        landmarks_BTL2 = extract = None
        videos_BTHWC = eval_data
        if isinstance(eval_data, dict):
            videos_BTHWC = eval_data["videos_BTHWC"]
            landmarks_BTL2 = eval_data.get("landmarks_BTL2")
            extract = eval_data.get("extract_landmarks")
        metrics, recon = evaluate_reconstruction(
            self._reconstruct, state.params["gen"], videos_BTHWC
        )
        akd = ""
        if landmarks_BTL2 is not None and extract is not None:
            copy = np.broadcast_to(videos_BTHWC[:, :1], videos_BTHWC.shape)
            for name, video in (("recon", recon), ("copy", copy)):
                metrics[f"{name}_akd"] = keypoint_distance_px(extract, video, landmarks_BTL2)
            akd = f"; AKD {metrics['recon_akd']:.2f} px, copy-source {metrics['copy_akd']:.2f} px"
        logging.info(
            "step %d: self-reconstruction L1 %.4f PSNR %.2f dB; copy-source L1 %.4f PSNR %.2f dB%s",
            step,
            metrics["recon_l1"],
            metrics["recon_psnr"],
            metrics["copy_l1"],
            metrics["copy_psnr"],
            akd,
        )
        shown = videos_BTHWC[: self.config.logging.figure_videos]
        grid = reconstruction_figure(shown, recon[: len(shown)])
        return metrics, {"self_reconstruction": (f"figures/recon_{step:07d}.png", grid)}

    def sample(self, state, eval_data, step, setup) -> dict:
        return {}
