r"""Exports a trained sDiT for serving and for other frameworks.

  python -m launch.export --checkpoint runs/sdit_tiny --output exports/sdit_tiny \
      --kinds inference,safetensors,forward,sampler --batch 1 --frames 4 --num_steps 25

`--checkpoint` is a training workdir (its latest checkpoint's EMA params are used) or an
inference checkpoint. Under `--output` it writes, per kind:

  inference/       config.json + ema_params/ (orbax), what `launch.reenact` loads
  safetensors/     sdit.safetensors (flat per-layer names, config in the metadata) + config.json
  forward/         jax.export of the model forward at (batch, frames), params.npz, manifest
  sampler/         jax.export of the DDIM sampler with num_steps steps, params.npz, manifest

The serialised kinds run with jax and numpy alone; see docs/interop.md.
"""

import os

from absl import app, flags, logging

from anchored_jax.interop.export_inference import save_inference_checkpoint
from anchored_jax.interop.export_safetensors import save_safetensors
from anchored_jax.interop.export_serialized import export_forward, export_sampler
from anchored_jax.training.inference_checkpoint import load_sdit_for_inference

KINDS = ("inference", "safetensors", "forward", "sampler")


def define_flags() -> None:
    """Flags are defined only when run as a program, so importing `run_export` (tests, other
    launchers with their own --checkpoint) never collides in absl's global registry."""
    flags.DEFINE_string("checkpoint", None, "training workdir or inference checkpoint")
    flags.DEFINE_string("output", None, "directory the exports are written under")
    flags.DEFINE_list("kinds", list(KINDS), f"which exports, any of {list(KINDS)}")
    flags.DEFINE_integer("batch", 1, "fixed batch (segments) of the serialised kinds")
    flags.DEFINE_integer("frames", 4, "fixed frames per clip of the serialised kinds")
    flags.DEFINE_integer("num_steps", 25, "DDIM steps baked into the sampler export")
    flags.DEFINE_list(
        "platforms", [], "jax.export platforms (cpu, cuda, tpu); default: this machine's"
    )


def run_export(
    checkpoint: str,
    output: str,
    kinds=KINDS,
    *,
    batch: int = 1,
    frames: int = 4,
    num_steps: int = 25,
    platforms=None,
) -> dict[str, str]:
    """Writes each of `kinds` under `output`; returns kind -> path written."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"--kinds: unknown {unknown}; expected any of {list(KINDS)}")
    for name, value in (("batch", batch), ("frames", frames), ("num_steps", num_steps)):
        if value < 1:
            raise ValueError(f"--{name}: expected a positive int, got {value}")
    config, graphdef, params = load_sdit_for_inference(checkpoint)
    if frames > config.model.max_frames:
        raise ValueError(f"--frames: {frames} exceeds model.max_frames {config.model.max_frames}")
    written = {}
    if "inference" in kinds:
        written["inference"] = save_inference_checkpoint(
            os.path.join(output, "inference"), config, params
        )
    if "safetensors" in kinds:
        path = os.path.join(output, "safetensors", "sdit.safetensors")
        save_safetensors(path, config, params)
        written["safetensors"] = path
    shapes = dict(batch=batch, frames=frames, platforms=platforms or None)
    if "forward" in kinds:
        path = os.path.join(output, "forward")
        export_forward(graphdef, params, config, path, **shapes)
        written["forward"] = path
    if "sampler" in kinds:
        path = os.path.join(output, "sampler")
        export_sampler(graphdef, params, config, path, num_steps=num_steps, **shapes)
        written["sampler"] = path
    return written


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    for name in ("checkpoint", "output"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    written = run_export(
        FLAGS.checkpoint,
        FLAGS.output,
        FLAGS.kinds,
        batch=FLAGS.batch,
        frames=FLAGS.frames,
        num_steps=FLAGS.num_steps,
        platforms=FLAGS.platforms,
    )
    for kind, path in written.items():
        logging.info("exported %s: %s", kind, path)
        print(f"{kind}: {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
