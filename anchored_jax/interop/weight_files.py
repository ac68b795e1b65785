"""Reading foreign weight files safely, and the one error every importer raises.

Weights arrive as safetensors (read with numpy, no torch needed) or as PyTorch `.pt`/`.pth`
files read with `torch.load(weights_only=True)`, which refuses anything but tensors and
plain containers: no pickled object is ever executed. torch is an optional extra and is
imported only for `.pt` files.

`check_layout` compares what a file holds with what a model expects and raises one
`WeightLayoutError` naming every missing key, unexpected key and shape that differs.
"""

import os

import numpy as np

# How many names of each kind an error message spells out before it summarises.
MAX_LISTED = 12


class WeightLayoutError(ValueError):
    """A weight file does not match the model: missing, unexpected or mis-shaped entries."""


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" ... and {more} more" if more > 0 else "")


def check_layout(
    source: str,
    expected: dict[str, tuple[int, ...]],
    found: dict[str, tuple[int, ...]],
    ignored: frozenset[str] = frozenset(),
) -> None:
    """Raises one error listing every difference between `found` and `expected` shapes.

    `ignored` names keys the file may hold that this import deliberately leaves out.
    """
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected) - set(ignored))
    mismatched = sorted(
        f"{k} {tuple(found[k])} (expected {tuple(expected[k])})"
        for k in set(expected) & set(found)
        if tuple(found[k]) != tuple(expected[k])
    )
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if mismatched:
        parts.append(f"{len(mismatched)} shapes differ: {_listing(mismatched)}")
    raise WeightLayoutError(f"{source}: does not match the model; " + "; ".join(parts))


def _refusal_reason(error: Exception) -> str:
    """What torch's weights-only loader refused, without its advice to API users.

    torch words this differently by case: a "WeightsUnpickler error: ..." line for a class
    it could allow-list, a bare "... unsupported GLOBAL posix.system ..." line for a blocked
    module. Its advice (re-run with weights_only=False, call add_safe_globals) is dropped: a
    command-line user cannot act on it, and the first would run the file's code.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip()
            reason = reason or (lines[i + 1] if i + 1 < len(lines) else line)
            return reason.split(" Please use ", 1)[0].rstrip(".")
    for line in lines:
        if "GLOBAL" in line or "unsupported" in line.lower():
            return line.rstrip(".")
    advice = ("Weights only load failed", "Check the documentation", "(1)", "(2)")
    plain = [line for line in lines if not line.startswith(advice)]
    return (plain or lines or [type(error).__name__])[0].rstrip(".")


def read_torch_weights_only(path: str, allowed: tuple[type, ...] = ()):
    """`torch.load(weights_only=True)`: tensors and plain containers, never pickled code.

    allowed: classes admitted beyond those (`safe_globals`), e.g. `argparse.Namespace` for
      the training arguments LIA's checkpoints carry; nothing else is ever added.
    """
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install torch); "
            "a .safetensors file needs only numpy"
        ) from e
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError and others for non-tensor content
        raise ValueError(
            f"{path}: not a plain tensor checkpoint, refused without running it "
            f"(torch.load with weights_only=True refused it: {_refusal_reason(e)}); if you "
            "trust the file, re-save its state dict (torch.save(model.state_dict(), path)) "
            "or convert it to .safetensors"
        ) from e


def read_safetensors(path: str) -> dict[str, np.ndarray]:
    """A `.safetensors` file as numpy arrays; anything else is one ValueError naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except SafetensorError as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e


def load_weight_file(path: str, *, prefer_key: str | None = None) -> dict[str, np.ndarray]:
    """Flat `name -> float32 numpy array` from a `.safetensors`, `.pt`, `.pth` or `.bin` file.

    `prefer_key`: a training checkpoint may nest several state dicts (DiT's holds `model`,
    `ema`, `opt`); this one is taken when present.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: weight file not found")
    if path.endswith(".safetensors"):
        tensors = read_safetensors(path)
    elif path.endswith((".pt", ".pth", ".bin", ".ckpt")):
        loaded = read_torch_weights_only(path)
        if isinstance(loaded, dict) and prefer_key is not None and prefer_key in loaded:
            loaded = loaded[prefer_key]
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(loaded).__name__}")
        tensors = {}
        for name, value in loaded.items():
            if not hasattr(value, "detach"):
                raise ValueError(
                    f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor; "
                    "expected a flat state dict"
                )
            tensors[name] = value.detach().float().cpu().numpy()
    else:
        raise ValueError(
            f"{path}: unknown weight format; expected .safetensors, .pt, .pth, .bin or .ckpt"
        )
    return {name: np.asarray(value, np.float32) for name, value in tensors.items()}
