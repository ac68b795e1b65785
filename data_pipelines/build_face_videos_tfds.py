r"""Command line: build the `face_videos` TFDS dataset (ArrayRecord shards) from a prepared folder.

  python -m data_pipelines.build_face_videos_tfds --manual_dir /data/vox_prepared \
      --data_dir /data/tfds --config s256

The builder lives in `data_pipelines.tfds_face_videos`; this module only parses flags, so the
builder class is registered once under its own module name.
"""

import argparse

from data_pipelines.tfds_face_videos import FaceVideos, build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m data_pipelines.build_face_videos_tfds",
        description="Build the face_videos TFDS dataset (ArrayRecord) from a prepared folder.",
    )
    parser.add_argument("--manual_dir", required=True, help="folder with train/ and test/")
    parser.add_argument("--data_dir", required=True, help="TFDS data_dir to write into")
    names = [c.name for c in FaceVideos.BUILDER_CONFIGS]
    parser.add_argument("--config", default="s256", choices=names, help="frame size")
    args = parser.parse_args(argv)
    path = build(args.manual_dir, args.data_dir, args.config)
    print(
        f"wrote {path}; train with --config.data.source=tfds:face_videos/{args.config} "
        f"--config.data.root={args.data_dir}"
    )


if __name__ == "__main__":
    main()
