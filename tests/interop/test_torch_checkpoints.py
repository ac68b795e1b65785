"""PyTorch checkpoints as their authors save them: LIA's trainer layout loads through an
allow-list of one class; a hostile pickle is refused with its real reason, and
`launch.import_weights dit` answers every hostile or broken file with one line."""

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from anchored_jax.interop.lia_import import lia_generator_params, read_state_dict
from anchored_jax.interop.weight_files import read_torch_weights_only
from tests.interop.test_leo_lia_import import TINY, torch_layout_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SystemCall:
    """Unpickling this would run a shell command creating `target`."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_lia_trainer_checkpoint_with_its_args_namespace_loads(tmp_path):
    torch = pytest.importorskip("torch")
    sd = torch_layout_state_dict(seed=3)
    gen = {k: torch.from_numpy(v) for k, v in sd.items()}
    path = str(tmp_path / "vox.pt")
    # What LIA's train.py saves: both networks, both optimisers and its argparse options.
    args = argparse.Namespace(size=16, lr=0.002, batch_size=32, exp_path="./exps/")
    torch.save(
        {"gen": gen, "dis": {"w": torch.zeros(2)}, "g_optim": {"state": {}, "param_groups": []},
         "d_optim": {"state": {}, "param_groups": []}, "args": args},
        path,
    )  # fmt: skip
    params = lia_generator_params(TINY, read_state_dict(path, entry="gen"))
    leaf = dict(nnx.to_flat_state(params))[("enc", "fc", 0, "weight")].get_value()
    np.testing.assert_array_equal(leaf, sd["enc.fc.0.weight"].T)
    # The allow-list is LIA's alone: the plain weights reader still refuses the Namespace.
    with pytest.raises(ValueError, match="GLOBAL argparse.Namespace"):
        read_torch_weights_only(path)


@pytest.mark.parametrize("wrap", ["bare", "inside_namespace"])
def test_a_hostile_pickle_is_refused_with_its_reason(tmp_path, wrap):
    torch = pytest.importorskip("torch")
    target = tmp_path / "ran"
    payload = SystemCall(str(target))
    entry = payload if wrap == "bare" else argparse.Namespace(size=payload)
    path = str(tmp_path / "vox.pt")
    torch.save({"gen": {}, "args": entry}, path)
    with pytest.raises(ValueError) as error:
        read_state_dict(path, entry="gen")
    message = str(error.value)
    assert not target.exists(), "the pickled command ran"
    assert "unsupported GLOBAL posix.system" in message, message
    assert message.startswith(f"{path}: not a plain tensor checkpoint") and "\n" not in message
    # What to do instead, and none of torch's advice a command-line user cannot follow.
    assert "re-save its state dict" in message
    assert "weights_only=False" not in message and "add_safe_globals" not in message


def _import_dit(tmp_path, checkpoint):
    return subprocess.run(
        [sys.executable, "-m", "launch.import_weights", "dit", "--checkpoint", checkpoint,
         "--config", "configs/sdit.py:tiny", "--config.model.depth=2",
         "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _hostile_pt(tmp_path):
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "DiT-XL-2-256x256.pt")
    torch.save({"ema": SystemCall(str(tmp_path / "ran"))}, path)
    return path, "unsupported GLOBAL posix.system"


def _truncated_safetensors(tmp_path):
    path = tmp_path / "dit.safetensors"
    path.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": ')
    return str(path), "not a readable safetensors file"


def _other_model(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "dit.safetensors")
    save_file({"features.0.weight": np.zeros((2, 2), np.float32)}, path)
    return path, "not a DiT state dict?"


def _missing(tmp_path):
    return str(tmp_path / "nothing.pt"), "weight file not found"


@pytest.mark.parametrize("make", [_hostile_pt, _truncated_safetensors, _other_model, _missing])
def test_import_weights_dit_refuses_in_one_line(tmp_path, make):
    checkpoint, reason = make(tmp_path)
    result = _import_dit(tmp_path, checkpoint)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert reason in lines[0] and checkpoint in lines[0]
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()
