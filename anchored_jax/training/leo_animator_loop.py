"""The animator training loop, top to bottom: writers, models and optimisers, restore, loop.

Like the sDiT loop, it takes the grain iterator (whose state it checkpoints with the train
state, so a resumed run repeats an uninterrupted one) and fixed held-out videos from its
caller, and never imports the data pipelines. Evaluation is self-reconstruction: frame 0 of
each held-out video is the source and every frame drives it; it is reported against the
copy-source baseline (predicting frame 0 everywhere), and drawn as a figure.
"""

import json
import os
from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from einops import rearrange

from anchored_jax.training.checkpointing import RunCheckpoints, write_run_config
from anchored_jax.training.leo_animator_step import (
    AnimatorState,
    init_animator,
    make_optimizers,
    make_reconstruction_step,
    make_train_step,
)
from anchored_jax.training.sample_grid import to_uint8, write_grid_png
from anchored_jax.training.train_state import param_count
from anchored_jax.training.trainer import PreemptionFlag, close_run, save_if_due

EVAL_LOG = "eval_metrics.jsonl"


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


def train_animator(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    train_iter: Iterator[Mapping[str, np.ndarray]],
    eval_videos_BTHWC: np.ndarray,
    vgg_params=None,
    stop_at_step: int | None = None,
) -> dict[str, float]:
    """Trains to `config.training.num_steps`, resuming from the workdir's latest checkpoint.

    Returns the last evaluation and, for a run that started at step 0, the first one.
    """
    num_steps = config.training.num_steps
    is_main = jax.process_index() == 0

    # ------------------------------------------------------------------ writers
    writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
    if is_main:
        write_run_config(workdir, config)

    # ------------------------------------------------------------------ models and optimisers
    gen_tx, disc_tx = make_optimizers(config.training)
    graphs, _ = jax.eval_shape(lambda: init_animator(config, config.seed, gen_tx, disc_tx))

    def init_state() -> AnimatorState:
        return init_animator(config, config.seed, gen_tx, disc_tx)[1]

    # ------------------------------------------------------------------ restore or initialise
    checkpoints = RunCheckpoints(workdir, config.checkpoint)
    latest = checkpoints.latest_step()
    if latest is not None:
        logging.info("Resuming from %s at step %d.", checkpoints.directory, latest)
        state = checkpoints.restore(latest, jax.eval_shape(init_state), train_iter)
    else:
        state = jax.jit(init_state)()
    start_step = int(state.step)
    n_gen, n_disc = param_count(state.gen_params), param_count(state.disc_params)
    logging.info(
        "Animator: generator %s, discriminator %s parameters; step %d of %d.",
        f"{n_gen:,}",
        f"{n_disc:,}",
        start_step,
        num_steps,
    )
    if start_step == 0:
        writer.write_hparams({"gen_params": n_gen, "disc_params": n_disc})

    # ------------------------------------------------------------------ steps
    train_step = jax.jit(
        make_train_step(graphs, gen_tx, disc_tx, config.losses), donate_argnums=(0,)
    )
    reconstruct = jax.jit(make_reconstruction_step(graphs))
    figure_videos = eval_videos_BTHWC[: config.logging.figure_videos]

    def run_eval(step: int) -> dict[str, float]:
        metrics, recon = evaluate_reconstruction(reconstruct, state.gen_params, eval_videos_BTHWC)
        writer.write_scalars(step, metrics)
        grid = reconstruction_figure(figure_videos, recon[: len(figure_videos)])
        writer.write_images(step, {"self_reconstruction": grid[None]})
        if is_main:
            write_grid_png(grid, os.path.join(workdir, "figures", f"recon_{step:07d}.png"))
            with open(os.path.join(workdir, EVAL_LOG), "a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")
        logging.info(
            "step %d: self-reconstruction L1 %.4f PSNR %.2f dB; copy-source L1 %.4f PSNR %.2f dB",
            step,
            metrics["recon_l1"],
            metrics["recon_psnr"],
            metrics["copy_l1"],
            metrics["copy_psnr"],
        )
        return metrics

    # ------------------------------------------------------------------ loop
    report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
    first_eval = run_eval(start_step) if start_step == 0 else None
    last_eval = first_eval
    pending = []
    step = start_step
    end_step = num_steps if stop_at_step is None else min(stop_at_step, num_steps)
    with PreemptionFlag() as preemption:
        while step < end_step:
            state, metrics = train_step(state, next(train_iter), vgg_params)
            pending.append(metrics)
            step += 1
            report_progress(step)
            if step % config.logging.log_every_steps == 0 or step == end_step:
                means = jax.tree.map(lambda *xs: float(jnp.mean(jnp.stack(xs))), *pending)
                writer.write_scalars(step, {f"train_{k}": v for k, v in means.items()})
                pending = []
                if not np.isfinite(means["loss"]):
                    raise FloatingPointError(f"train loss is {means['loss']} at step {step}")
            if step % config.logging.eval_every_steps == 0 or step == num_steps:
                last_eval = run_eval(step)
            if save_if_due(checkpoints, preemption, step, end_step, state, train_iter, config):
                break
    close_run(checkpoints, writer)
    summary = {"step": step, **(last_eval or {})}
    if first_eval is not None:
        summary.update({f"initial_{k}": v for k, v in first_eval.items()})
    return summary
