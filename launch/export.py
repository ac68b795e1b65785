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
import sys

from absl import flags, logging

from anchored_jax.interop.export_inference import save_inference_checkpoint
from anchored_jax.interop.export_safetensors import save_safetensors
from anchored_jax.interop.export_serialized import export_forward, export_sampler
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference
from anchored_jax.pipelines.command_line import run

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


def check_flags(FLAGS) -> None:
    """Every flag checked (one line naming it) before the checkpoint is loaded."""
    for name in ("checkpoint", "output"):
        if not FLAGS[name].value:
            raise ValueError(f"--{name}: required")
    unknown = sorted(set(FLAGS.kinds) - set(KINDS))
    if unknown or not FLAGS.kinds:
        raise ValueError(f"--kinds: unknown {unknown}; expected any of {list(KINDS)}")
    for name in ("batch", "frames", "num_steps"):
        if FLAGS[name].value < 1:
            raise ValueError(f"--{name}: expected a positive int, got {FLAGS[name].value}")
    bad = sorted(set(FLAGS.platforms) - {"cpu", "cuda", "rocm", "tpu"})
    if bad:
        raise ValueError(f"--platforms: unknown {bad}; expected any of cpu, cuda, rocm, tpu")
    if os.path.isfile(FLAGS.output):
        raise ValueError(f"--output {FLAGS.output}: is a file, expected a folder")


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
    FLAGS = flags.FLAGS
    try:
        check_flags(FLAGS)
        written = run_export(
            FLAGS.checkpoint, FLAGS.output, FLAGS.kinds, batch=FLAGS.batch,
            frames=FLAGS.frames, num_steps=FLAGS.num_steps, platforms=FLAGS.platforms,
        )  # fmt: skip
    except (ValueError, OSError) as e:  # flags, checkpoints, unwritable output
        sys.exit(f"error: {e}")
    for kind, path in written.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    define_flags()
    run(main)
