r"""Face videos as a TFDS dataset in ArrayRecord shards, and its reader (`data.source=tfds:NAME`).

Build it from a prepared video folder (`train/`, `test/`, each video with its landmark file):

  python -m data_pipelines.build_face_videos_tfds --config s256 \
      --manual_dir /data/vox_prepared --data_dir /data/tfds

or, where apache-beam is installed (tensorflow-datasets 4.9's `tfds` command imports it):

  PYTHONPATH=. tfds build data_pipelines/tfds_face_videos.py --config s256 \
      --manual_dir /data/vox_prepared --data_dir /data/tfds --file_format array_record

One example per video: its frames as JPEGs (centred square, resized to the config's size),
landmarks per frame, fps, the video id (its path under the split) and identity id. Files the
video-folder scan rejects are left out and listed in the build log. The reader opens the shards
with `tfds.data_source` (random access, no TensorFlow graph) and JPEG-decodes only the frames a
clip asks for.
"""

import dataclasses
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from data_pipelines.sources import VideoRecord
from data_pipelines.video_decoding import BadVideoError

_JPEG_QUALITY = 95  # visually lossless at 256 px, about 15 kB a frame


def _jpeg(frame_HWC: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame_HWC).save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return buffer.getvalue()


@dataclasses.dataclass
class FaceVideosConfig(tfds.core.BuilderConfig):
    image_size: int = 256
    min_frames: int = 8  # shorter videos are left out: a clip needs K frames


class FaceVideos(tfds.core.GeneratorBasedBuilder):
    """Prepared face videos: JPEG frames, landmarks, fps, ids; train and test splits."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG frames, per-frame landmarks, fps, video and identity ids."}
    BUILDER_CONFIGS = [
        FaceVideosConfig(name="s256", image_size=256, description="256 x 256 frames"),
        FaceVideosConfig(name="s64", image_size=64, description="64 x 64 frames"),
        FaceVideosConfig(name="s32", image_size=32, min_frames=3, description="32 x 32 (tests)"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Pass --manual_dir: a folder with train/ and test/ of videos, each beside its landmark "
        "file <name>.npz, as `python -m launch.prepare_data` writes them."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    # JPEG bytes, not tfds Image: the numpy reader would decode every frame of
                    # the video on each access, and a clip needs K of them.
                    "frames": tfds.features.Sequence(
                        tfds.features.Tensor(shape=(), dtype=np.object_),
                        doc=f"JPEG-encoded {size}x{size} RGB frames",
                    ),
                    "landmarks": tfds.features.Tensor(
                        shape=(None, None, 3), dtype=np.float32, encoding="zlib"
                    ),
                    "fps": tfds.features.Scalar(dtype=np.float32),
                    "video_id": tfds.features.Text(),
                    "identity_id": tfds.features.Scalar(dtype=np.int64),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        root = os.fspath(dl_manager.manual_dir)
        return {split: self._generate_examples(root, split) for split in ("train", "test")}

    def _generate_examples(self, root: str, split: str):
        from data_pipelines.video_files import VideoFileSource

        config = self.builder_config
        source = VideoFileSource(
            root, split, image_size=config.image_size, min_frames=config.min_frames, verify=True
        )
        print(source.report.summary())
        for video_id, name in enumerate(source.names):
            record = source[video_id]
            try:
                frames_THWC = source.read_frames(video_id, np.arange(record.num_frames))
            except BadVideoError as e:  # Changed on disk since the scan.
                print(f"skipping {e}")
                continue
            yield (
                name,
                {
                    "frames": [_jpeg(frame_HWC) for frame_HWC in frames_THWC],
                    "landmarks": record.landmarks_TLC,
                    "fps": np.float32(record.fps),
                    "video_id": name,
                    "identity_id": record.identity_id,
                },
            )


class TfdsVideoSource:
    """One split of a built TFDS face-video dataset as a `VideoSource`.

    `name` is the registered builder name with its config, e.g. `face_videos/s256`.
    """

    def __init__(
        self,
        name: str,
        split: str,
        *,
        data_dir: str | None,
        image_size: int,
        min_frames: int,
    ):
        self.name, self.split, self.data_dir = name, split, data_dir
        self.image_size, self.min_frames = image_size, min_frames
        try:
            self._data = tfds.data_source(
                name,
                split=split,
                data_dir=data_dir,
                download=False,
            )
        except Exception as e:  # TFDS raises several types for a missing or unbuilt dataset.
            raise ValueError(
                f"data.source: could not open TFDS dataset {name!r} split {split!r} in "
                f"data_dir {data_dir or '(the TFDS default)'} ({type(e).__name__}: {e})"
            ) from None

    def __len__(self) -> int:
        return len(self._data)

    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_data"]  # Reopened in each grain worker.
        return state

    def __setstate__(self, state):
        self.__init__(
            state["name"],
            state["split"],
            data_dir=state["data_dir"],
            image_size=state["image_size"],
            min_frames=state["min_frames"],
        )

    def _example(self, video_id: int) -> dict:
        if not 0 <= video_id < len(self._data):
            raise IndexError(f"video_id {video_id} out of range for {len(self._data)} videos")
        return self._data[video_id]

    def __getitem__(self, video_id: int) -> VideoRecord:
        video_id = int(video_id)
        example = self._example(video_id)
        num_frames = len(example["frames"])
        if num_frames < self.min_frames:
            raise ValueError(
                f"{self.name}[{video_id}] ({example['video_id']!r}): {num_frames} frames, a clip "
                f"needs {self.min_frames}; rebuild without videos this short"
            )
        return VideoRecord(
            video_id=video_id,
            identity_id=int(example["identity_id"]),
            num_frames=num_frames,
            fps=float(example["fps"]),
            landmarks_TLC=np.asarray(example["landmarks"], np.float32),
        )

    def read_frames(self, video_id: int, indices: np.ndarray) -> np.ndarray:
        jpegs = self._example(int(video_id))["frames"]
        indices = np.asarray(indices, np.int64).reshape(-1)
        out = np.zeros((len(indices), self.image_size, self.image_size, 3), np.uint8)
        for k, i in enumerate(indices):
            with Image.open(io.BytesIO(jpegs[i])) as image:
                image = image.convert("RGB")
                if image.size != (self.image_size, self.image_size):
                    image = image.resize((self.image_size, self.image_size), Image.BILINEAR)
                out[k] = np.asarray(image)
        return out

    def __repr__(self) -> str:
        return f"TfdsVideoSource({self.name!r}, split={self.split!r}, videos={len(self)})"


def build(manual_dir: str, data_dir: str, config: str = "s256") -> str:
    """Writes the ArrayRecord shards of both splits; returns the dataset's folder."""
    builder = FaceVideos(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
    )
    return os.fspath(builder.data_path)
