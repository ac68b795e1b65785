"""No loader of a user-supplied file runs pickled code: each refuses it with one clear line.

Every file here carries a pickle whose unpickling would create a sentinel file. It is written
under the name each loader expects (a torch `.pt`/`.pth`/`.bin` as `torch.save` or a bare
pickle writes it, an `.npz`/`.npy` with object arrays, a pickle passed off as safetensors,
a latent-cache record), the loader is called, and the test checks both that it raised an
error naming the file and that the sentinel does not exist.
"""

import os
import pickle

import numpy as np
import pytest

SENTINEL = "pickle_payload_ran"


class Payload:
    """Unpickling this opens (creates) the sentinel file: proof that pickled code ran."""

    def __init__(self, sentinel: str):
        self.sentinel = sentinel

    def __reduce__(self):
        return open, (self.sentinel, "w")


def _entries(payload) -> dict:
    # Keys the importers look for (LIA's `gen`, DiT's `ema`), so none stops before unpickling.
    return {"gen": payload, "ema": payload, "model": payload, "features.0.weight": payload}


def write_torch_zip(path, payload):
    torch = pytest.importorskip("torch")
    torch.save(_entries(payload), path)


def write_bare_pickle(path, payload):
    with open(path, "wb") as f:
        pickle.dump(_entries(payload), f, protocol=2)  # torch's own protocol: no warning


def write_npz_objects(path_or_file, payload):
    obj = np.array([payload], dtype=object)
    # Every key the numpy loaders read: motion codes, landmark files, latent-cache records.
    names = ("codes", "landmarks", "fps", "layout", "latents_ThwC", "landmarks_TLC")
    if isinstance(path_or_file, str):
        with open(path_or_file, "wb") as f:
            np.savez(f, **dict.fromkeys(names, obj))
    else:
        np.savez(path_or_file, **dict.fromkeys(names, obj))


def write_npy_objects(path, payload):
    with open(path, "wb") as f:
        np.save(f, np.array([payload], dtype=object), allow_pickle=True)


def write_latent_record(path, payload):
    import io

    from array_record.python.array_record_module import ArrayRecordWriter

    blob = io.BytesIO()
    write_npz_objects(blob, payload)
    writer = ArrayRecordWriter(str(path), "group_size:1")
    writer.write(blob.getvalue())
    writer.close()


def load_dit(path):
    from anchored_jax.interop.dit_import import load_dit_checkpoint

    return load_dit_checkpoint(path)


def load_lia(path):
    from anchored_jax.interop.lia_import import read_state_dict

    return read_state_dict(path, entry="gen")


def load_vgg19(path):
    from launch.train_animator import load_vgg_params

    return load_vgg_params(path)


def load_vae(path):
    """The diffusers VAE importer reads a directory: a valid config.json beside the weights."""
    import json

    from anchored_jax.interop.diffusers_vae import load_diffusers_vae
    from tests.interop.vae_reference import config_dict

    directory = os.path.dirname(path)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config_dict(), f)
    return load_diffusers_vae(directory)


def load_weights(path):
    from anchored_jax.interop.weight_files import load_weight_file

    return load_weight_file(path)


def load_sdit_safetensors(path):
    from anchored_jax.interop.export_safetensors import load_safetensors

    return load_safetensors(path)


def load_motion_codes(path):
    from data_pipelines.motion_codes import read_code_file

    return read_code_file(path)


def load_landmark_file(path):
    from data_pipelines.landmark_files import load_landmarks

    return load_landmarks(path)


def load_driving_npy(path):
    from configs import sdit
    from data_pipelines.inference_inputs import load_driving_track

    return load_driving_track(path, sdit.get_config("tiny"), None, 25.0)


def load_latent_cache(path):
    from data_pipelines.latent_cache import LatentCacheSource

    return LatentCacheSource(path)


# (loader, file name it expects, writer of the hostile file)
CASES = {
    "dit_pt_torch_save": (load_dit, "DiT-XL-2-256x256.pt", write_torch_zip),
    "dit_pt_bare_pickle": (load_dit, "DiT-XL-2-256x256.pt", write_bare_pickle),
    "lia_pt_torch_save": (load_lia, "vox.pt", write_torch_zip),
    "lia_pt_bare_pickle": (load_lia, "vox.pt", write_bare_pickle),
    "vgg19_pth_torch_save": (load_vgg19, "vgg19-dcbb9e9d.pth", write_torch_zip),
    "vgg19_pth_bare_pickle": (load_vgg19, "vgg19-dcbb9e9d.pth", write_bare_pickle),
    "vae_bin_torch_save": (load_vae, "diffusion_pytorch_model.bin", write_torch_zip),
    "vae_bin_bare_pickle": (load_vae, "diffusion_pytorch_model.bin", write_bare_pickle),
    "vae_pickle_as_safetensors": (
        load_vae,
        "diffusion_pytorch_model.safetensors",
        write_bare_pickle,
    ),
    "weights_pickle_as_safetensors": (load_weights, "model.safetensors", write_bare_pickle),
    "lia_pickle_as_safetensors": (load_lia, "vox.safetensors", write_bare_pickle),
    "sdit_pickle_as_safetensors": (load_sdit_safetensors, "sdit.safetensors", write_bare_pickle),
    "motion_codes_npz_objects": (load_motion_codes, "codes.npz", write_npz_objects),
    "motion_codes_bare_pickle": (load_motion_codes, "codes.npz", write_bare_pickle),
    "landmarks_npz_objects": (load_landmark_file, "clip.landmarks.npz", write_npz_objects),
    "landmarks_bare_pickle": (load_landmark_file, "clip.landmarks.npz", write_bare_pickle),
    "driving_npy_objects": (load_driving_npy, "driving.npy", write_npy_objects),
    "latent_cache_npz_objects": (load_latent_cache, "train.array_record", write_latent_record),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_loader_refuses_a_pickle_without_running_it(tmp_path, case):
    load, name, write = CASES[case]
    sentinel = tmp_path / SENTINEL
    path = str(tmp_path / name)
    write(path, Payload(str(sentinel)))
    assert not sentinel.exists()
    with pytest.raises(ValueError) as error:
        load(path)
    message = str(error.value)
    assert not sentinel.exists(), f"{case}: the pickled payload ran"
    assert path in message and "\n" not in message, message


def _torch_load_unsafely(path):
    import torch

    torch.load(path, weights_only=False)


def _pickle_load(path):
    with open(path, "rb") as f:
        pickle.load(f)


def _np_load_with_pickles(path):
    loaded = np.load(path, allow_pickle=True)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded["codes"]


@pytest.mark.parametrize(
    "write, unsafe_load",
    [
        (write_torch_zip, _torch_load_unsafely),
        (write_bare_pickle, _pickle_load),
        (write_npz_objects, _np_load_with_pickles),
        (write_npy_objects, _np_load_with_pickles),
    ],
    ids=["torch_save", "bare_pickle", "npz_objects", "npy_objects"],
)
def test_the_payload_does_run_when_pickles_are_allowed(tmp_path, write, unsafe_load):
    """The hostile files are real: a loader that allowed pickles would create the sentinel."""
    sentinel = tmp_path / SENTINEL
    path = str(tmp_path / "file")
    write(path, Payload(str(sentinel)))
    unsafe_load(path)
    assert sentinel.exists()
