"""Inference pipelines: what a launcher or a notebook calls to use a trained model.

- `checkpoints`: the one loader of every kind of run (sDiT, LEO animator, LMDM), from a
  training workdir or an exported inference checkpoint;
- `reenactment`: a source image and a driving landmark track in, frames out, streamed in
  windows of segments so memory does not grow with the video's length;
- `leo`: LEO's animator (encode a driving video, render a source with its motion) and the
  LMDM's motion generation (LEO's chaining or anchored segments);
- `display`: frames as the written videos show them (panels, landmark dots).

The pipelines take and return arrays; reading files and writing videos is the launchers' part
(`data_pipelines.inference_inputs`, `data_pipelines.video_writing`).
"""
