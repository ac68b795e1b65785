"""launch.export: every export kind reloads to the same outputs; serialised ones without us."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from anchored_jax.interop.export_safetensors import load_safetensors
from anchored_jax.interop.export_serialized import (
    MANIFEST_FILE,
    make_sampler_fn,
    param_arrays,
)
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.optimizer import make_optimizer
from anchored_jax.training.sdit_setup import build_model
from anchored_jax.training.train_state import create_train_state, split_model
from configs.sdit import get_config
from launch.export import run_export

BATCH, FRAMES, STEPS = 2, 3, 4


def small_run_config():
    config = get_config("tiny")
    config.model.update(width=32, depth=2, num_heads=2, patch_size=8, identity_channels=(8, 16))
    return config


def _perturbed(params, seed):
    leaves, treedef = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        treedef, [x + 0.05 * rng.standard_normal(x.shape).astype(x.dtype) for x in leaves]
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A training workdir whose EMA differs from its params, and all four exports of it."""
    root = tmp_path_factory.mktemp("export")
    config = small_run_config()
    graphdef, params = split_model(build_model(config, config.seed))
    state = create_train_state(_perturbed(params, 0), make_optimizer(config.training))
    state = state.replace(ema_params=_perturbed(params, 1))
    workdir = str(root / "workdir")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort())
    checkpoints = RunCheckpoints(workdir, config.checkpoint)
    checkpoints.save(7, state, None, config)
    checkpoints.wait_until_finished()
    checkpoints.close()
    output = str(root / "out")
    written = run_export(workdir, output, batch=BATCH, frames=FRAMES, num_steps=STEPS)
    return dict(config=config, graphdef=graphdef, ema=state.ema_params, written=written)


def _inputs(config, seed=0):
    rng = np.random.default_rng(seed)
    S, C, L = config.model.image_size, config.model.in_channels, config.model.num_landmarks
    return {
        "x_BKHWC": rng.standard_normal((BATCH, FRAMES, S, S, C)).astype(np.float32),
        "t_BK": rng.integers(0, 1000, (BATCH, FRAMES)).astype(np.int32),
        "times_BK": np.sort(rng.uniform(-1, 2, (BATCH, FRAMES)), 1).astype(np.float32),
        "landmarks_BKLC": rng.uniform(0, 1, (BATCH, FRAMES, L, 3)).astype(np.float32),
        "identity": rng.standard_normal((BATCH, S, S, C)).astype(np.float32),
        "drop_identity_B": np.array([False, True]),
        "drop_landmarks_B": np.array([True, False]),
    }


@nnx.jit
def _forward(model, inputs):
    return model(
        inputs["x_BKHWC"], inputs["t_BK"], inputs["times_BK"], inputs["landmarks_BKLC"],
        inputs["identity"], drop_identity_B=inputs["drop_identity_B"],
        drop_landmarks_B=inputs["drop_landmarks_B"],
    )  # fmt: skip


def _reference(exported, inputs):
    return np.asarray(_forward(nnx.merge(exported["graphdef"], exported["ema"]), inputs))


def test_inference_checkpoint_round_trips(exported):
    config, graphdef, params = load_sdit_for_inference(exported["written"]["inference"])
    assert json.loads(config.to_json()) == json.loads(exported["config"].to_json())
    inputs = _inputs(config)
    out = np.asarray(_forward(nnx.merge(graphdef, params), inputs))
    ref = _reference(exported, inputs)
    np.testing.assert_array_equal(out, ref)
    assert np.std(ref) > 0.05


def test_safetensors_round_trips_with_per_layer_names(exported):
    from safetensors.numpy import load_file

    path = exported["written"]["safetensors"]
    names = load_file(path)
    assert names["blocks.1.attn.qkv_kernel"].shape == (32, 3, 2, 16)
    np.testing.assert_array_equal(
        names["blocks.1.adaln.kernel"], np.asarray(exported["ema"]["blocks"]["adaln"]["kernel"][1])
    )
    with open(os.path.join(os.path.dirname(path), "config.json")) as f:
        assert json.load(f)["model"]["depth"] == 2
    config, graphdef, params = load_safetensors(path)
    inputs = _inputs(config, seed=1)
    out = np.asarray(_forward(nnx.merge(graphdef, params), inputs))
    np.testing.assert_array_equal(out, _reference(exported, inputs))


# A fresh interpreter that may import jax and numpy only.
RUNNER = r"""
import json, sys
import jax, numpy as np
d, inputs_path, out_path = sys.argv[1:4]
manifest = json.load(open(d + "/manifest.json"))
exported = jax.export.deserialize(bytearray(open(d + "/function.jax_export", "rb").read()))
params = dict(np.load(d + "/params.npz"))
inputs = dict(np.load(inputs_path))
assert sorted(inputs) == sorted(manifest["inputs"]), (sorted(inputs), manifest["inputs"])
np.save(out_path, np.asarray(exported.call(params, inputs)))
banned = [m for m in sys.modules if m.split(".")[0] in ("anchored_jax", "flax", "configs")]
assert not banned, banned
"""


def _run_fresh(directory, inputs, tmp_path):
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, directory, str(tmp_path / "inputs.npz"),
         str(tmp_path / "out.npy")],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(tmp_path / "out.npy")


def test_serialised_forward_runs_in_a_fresh_process(exported, tmp_path):
    inputs = _inputs(exported["config"], seed=2)
    out = _run_fresh(exported["written"]["forward"], inputs, tmp_path)
    ref = _reference(exported, inputs)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    with open(os.path.join(exported["written"]["forward"], MANIFEST_FILE)) as f:
        assert json.load(f)["output"]["shape"] == [BATCH, FRAMES, 32, 32, 3]


def test_serialised_sampler_runs_in_a_fresh_process(exported, tmp_path):
    config = exported["config"]
    rng = np.random.default_rng(3)
    full = _inputs(config, seed=3)
    known_x0 = rng.uniform(-1, 1, full["x_BKHWC"].shape).astype(np.float32)
    inputs = {
        "noise_BKHWC": full["x_BKHWC"],
        "times_BK": full["times_BK"],
        "landmarks_BKLC": full["landmarks_BKLC"],
        "identity": full["identity"],
        "known_x0_BKHWC": known_x0,
        "known_mask_BK": np.array([[True, False, False]] * BATCH),
    }
    out = _run_fresh(exported["written"]["sampler"], inputs, tmp_path)
    run = jax.jit(make_sampler_fn(exported["graphdef"], exported["ema"], config, STEPS))
    ref = np.asarray(run(param_arrays(exported["ema"]), inputs))
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, 0], known_x0[:, 0])  # the known anchor is held
    assert np.abs(out[:, 1:]).max() <= 1.0 and np.std(out[:, 1:]) > 0.05  # clipped x0


def test_bad_kind_names_the_flag(exported, tmp_path):
    with pytest.raises(ValueError, match=r"--kinds: unknown \['onnx'\]"):
        run_export(exported["written"]["inference"], str(tmp_path), ["onnx"])
