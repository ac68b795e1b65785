"""The inference checkpoint: the EMA parameters and the run config, nothing else.

Layout (read by `anchored_jax.training.inference_checkpoint.load_sdit_for_inference`,
and so by `launch.reenact --checkpoint`):

    <dir>/config.json    the full run config as JSON (what `launch.train` saved)
    <dir>/ema_params/    orbax `StandardCheckpointer` save of the EMA params `nnx.State`

It is a fraction of a training checkpoint (no optimizer moments, no raw params, no
iterator state), and restores onto any sharding the caller asks for.
"""

import json
import os

import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

CONFIG_FILE = "config.json"
EMA_PARAMS_DIR = "ema_params"


def config_json(config: ml_collections.ConfigDict | dict) -> str:
    if isinstance(config, ml_collections.ConfigDict):
        return config.to_json_best_effort(indent=2)
    return json.dumps(config, indent=2)


def save_inference_checkpoint(
    directory: str, config: ml_collections.ConfigDict | dict, ema_params: nnx.State
) -> str:
    """Writes `config.json` and `ema_params/` under `directory`; returns its absolute path.

    An existing `ema_params/` is an error (orbax never overwrites silently): pick a new
    directory for every export.
    """
    directory = os.path.abspath(directory)
    target = os.path.join(directory, EMA_PARAMS_DIR)
    if os.path.exists(target):
        raise FileExistsError(f"{target}: already exists; export into a new directory")
    os.makedirs(directory, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(target, ema_params)
        checkpointer.wait_until_finished()
    # The config goes last: a directory with config.json is a complete export.
    with open(os.path.join(directory, CONFIG_FILE), "w") as f:
        f.write(config_json(config))
    return directory
