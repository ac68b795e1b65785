"""Editing by re-rendering: the same noise and anchor, one changed condition.

`render_edit` renders a reenactment twice with one seed, unedited and edited, so the two
videos differ only by the edit: a motion edit of the driving track (`mouth`, `freeze_pose`,
`brows`, `retime`), another source (`swap`: identity and anchor), or the mix of two sources'
identity embeddings (`interpolate`, with a generated anchor so neither image pins the frames).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.pipelines.checkpoints import LoadedModel
from anchored_jax.sampling import motion_edits
from anchored_jax.sampling.sampler_settings import SamplerSettings
from anchored_jax.sampling.segment_plan import plan_segments
from anchored_jax.sampling.video_generation import generate_video

EDITS = ("swap", "interpolate", "mouth", "freeze_pose", "brows", "retime")
NEEDS_OTHER_SOURCE = ("swap", "interpolate")


def check_edit(edit: str, amount: float, other_HWC) -> None:
    if edit not in EDITS:
        raise ValueError(f"--edit: expected one of {list(EDITS)}, got {edit!r}")
    if edit in NEEDS_OTHER_SOURCE and other_HWC is None:
        raise ValueError(f"--other_source: the {edit} edit needs a second source")
    if edit == "retime" and not amount > 0:
        raise ValueError(f"--amount: retime needs a speed > 0, got {amount}")


def edited_inputs(edit: str, amount: float, landmarks_TLC, frame_times_T):
    """The driving track and frame times after a motion edit (unchanged for identity edits)."""
    if edit == "mouth":
        return motion_edits.scale_mouth_motion(landmarks_TLC, amount), frame_times_T
    if edit == "freeze_pose":
        return motion_edits.freeze_head_pose(landmarks_TLC), frame_times_T
    if edit == "brows":
        return motion_edits.offset_region(landmarks_TLC, "brows", (0.0, -amount)), frame_times_T
    if edit == "retime":
        span = frame_times_T[-1]
        step = (frame_times_T[1] - frame_times_T[0]) * amount
        new_times = np.arange(0.0, span + 1e-9, step)
        return motion_edits.retime(landmarks_TLC, frame_times_T, new_times), new_times
    return landmarks_TLC, frame_times_T


def render_edit(model: LoadedModel, source_HWC, landmarks_TLC, *, fps: float, edit: str,
                amount: float = 1.0, other_HWC=None, settings: SamplerSettings,
                seed: int = 0, plan_kind: str = "contiguous") -> dict:  # fmt: skip
    """Renders the unedited and the edited video (pixel models); returns both with the
    edited inputs: `base`, `edited`, `landmarks`, `times`, `source`."""
    check_edit(edit, amount, other_HWC)
    config, graphdef, params = model
    times_T = np.arange(len(landmarks_TLC)) / fps
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    K = config.data.clip_frames
    anchor = "generated" if edit == "interpolate" else "known"
    settings = dataclasses.replace(settings, anchor=anchor, method="anchored")

    def render(landmarks, times, src, mix=None):
        plan = plan_segments(len(landmarks), K, 0, plan_kind, seed=seed)
        video, _ = generate_video(
            graphdef, params, schedule,
            prediction=config.diffusion.prediction, plan=plan, landmarks_TLC=landmarks,
            frame_times_T=times, identity=src, source_HWC=src, settings=settings,
            key=jax.random.key(seed), identity_mix=mix,
        )  # fmt: skip
        return video

    base = render(landmarks_TLC, times_T, source_HWC)
    new_landmarks, new_times = edited_inputs(edit, amount, landmarks_TLC, times_T)
    if edit == "swap":
        edited = render(landmarks_TLC, times_T, other_HWC)
    elif edit == "interpolate":
        edited = render(landmarks_TLC, times_T, source_HWC, mix=(other_HWC, float(amount)))
    else:
        edited = render(new_landmarks, new_times, source_HWC)
    return dict(base=base, edited=edited, landmarks=new_landmarks, times=new_times,
                source=source_HWC if edit != "swap" else other_HWC)  # fmt: skip
