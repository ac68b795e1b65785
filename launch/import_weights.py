r"""Imports pretrained weights into an sDiT and saves the result as an inference checkpoint.

  python -m launch.import_weights dit --checkpoint DiT-XL-2-256x256.pt \
      --config configs/sdit.py:XL --output pretrained/sdit_xl_from_dit

The sDiT is built from the config with its own initialisation, then its trunk (patch
embedding, timestep embedder, blocks, final layer) is overwritten from the facebookresearch/
DiT checkpoint (`.pt` read with `torch.load(weights_only=True)`, or `.safetensors`). The
frame-time, landmark and identity parts keep their initialisation. The output directory
has the inference-checkpoint layout (`config.json` + `ema_params/`), so it can be sampled
from, exported, or used to start training. A checkpoint of another size fails with one
error listing the keys and shapes that differ.

  python -m launch.import_weights lia --checkpoint lia.pt --config configs/animator.py:256 \
      --output pretrained/lia_256

LIA's generator (the `gen` entry of a wyhsirius/LIA `.pt`, or a `.safetensors` conversion)
becomes the animator's generator parameters (`anchored_jax/interop/lia_import.py`, every key
and shape checked), saved in the same layout (`config.json` + `ema_params/`), which
`launch.animate --checkpoint` and `launch.generate --animator` load.
"""

import os
import sys

from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from anchored_jax.interop.dit_import import import_dit_weights, load_dit_checkpoint
from anchored_jax.interop.export_inference import save_inference_checkpoint
from anchored_jax.models.sdit import SDiT
from anchored_jax.models.sdit_config import SDiTConfig
from anchored_jax.training.config_checks import validate_sdit_config
from anchored_jax.training.train_state import split_model

SOURCES = ("dit", "lia")


def define_flags() -> None:
    """Defined only when run as a program: importing `import_dit` must not claim
    --config/--checkpoint in absl's global registry (other launchers use them too)."""
    config_flags.DEFINE_config_file("config", None, "sDiT config, e.g. configs/sdit.py:XL")
    flags.DEFINE_string("checkpoint", None, "DiT weights (.pt or .safetensors)")
    flags.DEFINE_string("output", None, "directory for the inference checkpoint")


def import_dit(config, checkpoint: str, output: str) -> dict:
    """Builds the model, imports the DiT trunk, saves; returns counts for the log."""
    validate_sdit_config(config)
    tensors = load_dit_checkpoint(checkpoint)
    # The model a training run of this config starts from; the trunk is then overwritten.
    model = SDiT(SDiTConfig(**config.model.to_dict()), rngs=nnx.Rngs(config.seed))
    report = import_dit_weights(model, tensors, checkpoint)
    _, params = split_model(model)
    save_inference_checkpoint(output, config, params)
    return {
        "imported": len(report.imported),
        "kept_at_init": len(report.kept),
        "skipped_keys": list(report.skipped_keys),
        "epsilon_half": report.epsilon_half,
    }


def import_lia(config, checkpoint: str, output: str) -> dict:
    """LIA's `gen` state dict -> our generator's parameters, saved for `launch.animate`."""
    import jax

    from anchored_jax.interop.lia_import import lia_generator_params, read_state_dict
    from anchored_jax.training.leo_animator_step import animator_config

    if config.get("task") != "animator":
        raise ValueError(f"--config: expected an animator config, got task {config.get('task')!r}")
    params = lia_generator_params(animator_config(config), read_state_dict(checkpoint, "gen"))
    save_inference_checkpoint(output, config, params)
    return {"imported": len(jax.tree.leaves(params)), "image_size": config.model.image_size}


def main(argv):
    if len(argv) != 2 or argv[1] not in SOURCES:
        raise app.UsageError(f"usage: python -m launch.import_weights {{{','.join(SOURCES)}}} ...")
    FLAGS = flags.FLAGS
    for name in ("config", "checkpoint", "output"):
        if not FLAGS[name].value:
            raise app.UsageError(f"--{name} is required")
    output = os.path.abspath(FLAGS.output)
    run = import_lia if argv[1] == "lia" else import_dit
    try:
        summary = run(FLAGS.config, FLAGS.checkpoint, output)
    except (ValueError, OSError, ImportError) as e:
        # Refused or broken weight files, bad keys or shapes, a bad config, unreadable or
        # existing output: one line, never a traceback.
        sys.exit(f"error: {e}")
    if argv[1] == "lia":
        print(f"imported {summary['imported']} LIA generator arrays into {output}")
        return
    logging.info("DiT import: %s", summary)
    print(f"imported {summary['imported']} parameters into {output}; {summary}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
