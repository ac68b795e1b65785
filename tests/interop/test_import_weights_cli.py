"""launch.import_weights: a DiT checkpoint becomes an inference checkpoint of the sDiT."""

import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from anchored_jax.interop.weight_files import WeightLayoutError
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference
from configs.sdit import get_config
from launch.import_weights import import_dit
from tests.interop.dit_reference import random_dit_state_dict


def _tiny_config():
    config = get_config("tiny")  # 32x32 pixels, patch 4, width 128, depth 4, 4 heads
    config.model.update(depth=2, identity_channels=(8, 16))
    return config


def test_imported_trunk_is_what_the_inference_loader_reads(tmp_path):
    sd = random_dit_state_dict(input_size=32, patch=4, in_ch=3, width=128, depth=2, seed=0)
    save_file(sd, str(tmp_path / "dit.safetensors"))
    summary = import_dit(_tiny_config(), str(tmp_path / "dit.safetensors"), str(tmp_path / "out"))
    assert summary["epsilon_half"] and summary["skipped_keys"] == [
        "y_embedder.embedding_table.weight"
    ]
    _, _, params = load_sdit_for_inference(str(tmp_path / "out"))
    np.testing.assert_array_equal(
        np.asarray(params["blocks"]["mlp"]["fc2"]["kernel"][1]), sd["blocks.1.mlp.fc2.weight"].T
    )
    np.testing.assert_array_equal(
        np.asarray(params["t_embedder"]["mlp"]["fc1"]["bias"]), sd["t_embedder.mlp.0.bias"]
    )


def test_another_size_is_refused_before_anything_is_written(tmp_path):
    sd = random_dit_state_dict(input_size=32, patch=2, in_ch=3, width=128, depth=2, seed=1)
    save_file(sd, str(tmp_path / "dit.safetensors"))
    with pytest.raises(WeightLayoutError, match="patch 2, 3 input channels; the config has"):
        import_dit(_tiny_config(), str(tmp_path / "dit.safetensors"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_command_line_writes_the_inference_checkpoint(tmp_path):
    sd = random_dit_state_dict(input_size=32, patch=4, in_ch=3, width=128, depth=2, seed=2)
    save_file(sd, str(tmp_path / "dit.safetensors"))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-m", "launch.import_weights", "dit",
         "--checkpoint", str(tmp_path / "dit.safetensors"), "--config", "configs/sdit.py:tiny",
         "--config.model.depth=2", "--output", str(tmp_path / "out")],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported" in result.stdout
    _, _, params = load_sdit_for_inference(str(tmp_path / "out"))
    np.testing.assert_array_equal(
        np.asarray(params["final_layer"]["adaln"]["bias"]),
        sd["final_layer.adaLN_modulation.1.bias"],
    )
