"""How a long video is sampled: the method, the anchor, the solver and guidance, in one value.

`SamplerSettings` is frozen and hashable, so it is a static argument of the jitted samplers:
each distinct setting compiles once. Its fields are the run config's `sampling` section
(configs/sdit.py), field for field: `SamplerSettings.from_config(config, **overrides)` is the
one place a launcher turns that section, plus its command-line overrides, into settings, and
the one place "auto" values are resolved. Every field is checked on construction and a bad
value fails with one line naming the config field (`sampling.<field>`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from anchored_jax.diffusion.reverse_step import SAMPLER_KINDS
from anchored_jax.sampling.segment_plan import PLAN_KINDS

# anchored: one shared anchor, averaged (generated) or held (known) across all segments;
# independent: the same segments with no shared anchor (each generates its own slot 0);
# autoregressive: segment s is conditioned on the last frame of segment s-1 (known path).
METHODS = ("anchored", "independent", "autoregressive")
ANCHOR_KINDS = ("known", "generated")
# clean: the known anchor is fed at per-frame t=0 on every step (how training shows it);
# renoise: it is re-noised from the source to the current step's t, like its neighbours.
KNOWN_ANCHOR_MODES = ("clean", "renoise")
# averaged: the generated anchor is denoised with every segment and averaged after each step;
# settled: it is first generated alone (averaged over up to 16 segments spread over the
# video), then held clean, like a known anchor, while every segment is denoised
GENERATED_ANCHOR_MODES = ("averaged", "settled")


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """Static choices of one sampling run; see the module docstring for the kinds."""

    method: str = "anchored"
    anchor: str = "known"  # known (the source image) | generated (unconditional / landmarks)
    known_anchor_mode: str = "clean"
    generated_anchor_mode: str = "settled"
    plan: str = "contiguous"  # how frames are split into segments (segment_plan.PLAN_KINDS)
    sampler: str = "ddim"  # ddim (deterministic at eta=0) | ddpm (ancestral, respaced)
    num_steps: int = 20  # solver steps; each is one batched model forward per CFG branch
    eta: float = 0.0  # DDIM stochasticity; 0 = deterministic
    identity_scale: float = 1.0  # CFG scale of the identity; 1 = no guidance
    landmark_scale: float = 1.0  # CFG scale of the landmarks; 1 = no guidance
    chunk_size: int = 32  # segments denoised at once: bounds memory, not the video length
    # clip the x0 estimate to [-1, 1] at every step: right for pixels, wrong for latents
    # (scaled SD latents are not bounded by 1, and DiT's own sampling does not clip)
    clip_x0: bool = True
    # > 0: a segment further than this many seconds from its slot 0 is moved closer (keeping
    # its own spacing), so the model never sees anchor gaps beyond its training clips' span;
    # 0 = true times relative to the anchor. In a config, -1 means "auto": the run's training
    # window (`training_window_s`), resolved by `from_config`.
    max_anchor_gap_s: float = 0.0
    # Correlation of the starting noise between frames: each frame's draw is
    # sqrt(c) * one draw shared by the whole video + sqrt(1 - c) * its own. With DDIM's
    # deterministic path, frames with near-equal conditions then end near-equal (less flicker);
    # 0 = independent frames, as in training. 0.97 cuts the tiny model's flicker ratio from 3.2
    # to 1.1 for 0.1 dB of PSNR (docs/anchored_inference.md).
    noise_correlation: float = 0.97

    def __post_init__(self):
        for name, allowed in (
            ("method", METHODS),
            ("anchor", ANCHOR_KINDS),
            ("known_anchor_mode", KNOWN_ANCHOR_MODES),
            ("generated_anchor_mode", GENERATED_ANCHOR_MODES),
            ("plan", PLAN_KINDS),
            ("sampler", SAMPLER_KINDS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"sampling.{name}: expected one of {list(allowed)}, got {value!r}")
        for name in ("num_steps", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sampling.{name}: expected an int >= 1, got {value!r}")
        if not self.max_anchor_gap_s >= 0.0:
            raise ValueError(
                f"sampling.max_anchor_gap_s: expected >= 0, got {self.max_anchor_gap_s!r}"
            )
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(
                f"sampling.noise_correlation: expected in [0, 1), got {self.noise_correlation!r}"
            )
        if not self.eta >= 0.0:
            raise ValueError(f"sampling.eta: expected >= 0, got {self.eta!r}")
        for name in ("identity_scale", "landmark_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"sampling.{name}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"sampling.{name}: expected a finite number, got {value!r}")
        if not isinstance(self.clip_x0, bool):
            raise ValueError(f"sampling.clip_x0: expected True or False, got {self.clip_x0!r}")
        if self.method == "autoregressive" and self.anchor != "known":
            raise ValueError(
                "sampling.anchor: the autoregressive baseline conditions on known frames; "
                f"expected 'known', got {self.anchor!r}"
            )

    @classmethod
    def from_config(cls, config, **overrides: Any) -> SamplerSettings:
        """The settings of a run: its config's `sampling` section, then `overrides` on top.

        An override whose value is None is ignored (a command-line flag left unset), so a
        launcher passes every flag and only the given ones win. `max_anchor_gap_s < 0` is
        "auto" and resolves here, and only here, to the run's training window. A config from
        before the `sampling` section existed gets the dataclass defaults. Unknown names in
        the section or the overrides fail with one line naming them.
        """
        section = config.get("sampling", None) if hasattr(config, "get") else None
        values = dict(section.items()) if section is not None else {}
        for name, value in overrides.items():
            if value is not None:
                values[name] = value
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(
                f"sampling.{unknown[0]}: not a sampler setting; expected one of {sorted(fields)}"
            )
        for name, value in values.items():
            # JSON-restored configs and integer flags give 2 where 2.0 is meant.
            is_int = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(fields[name].default, float) and is_int:
                values[name] = float(value)
        gap = values.get("max_anchor_gap_s", 0.0)
        if isinstance(gap, (int, float)) and gap < 0:
            values["max_anchor_gap_s"] = training_window_s(config)
        return cls(**values)

    def traced(self) -> SamplerSettings:
        """These settings with the host-side fields reset: what a compiled sampler depends on.

        The plan, the anchor-gap cap and the starting-noise correlation only change the
        arrays handed to the sampler, so runs that differ only in them share one compilation.
        """
        return dataclasses.replace(
            self, plan="contiguous", max_anchor_gap_s=0.0, noise_correlation=0.0
        )

    @property
    def guidance_branches(self) -> tuple[str, ...]:
        """The model outputs classifier-free guidance needs, fixed at trace time.

        `full` alone when both scales are 1; the identity-only branch when the landmark scale
        differs from 1; the unconditional one when the identity scale does.
        """
        branches = ["full"]
        if self.landmark_scale != 1.0 or self.identity_scale != 1.0:
            branches.append("identity")
        if self.identity_scale != 1.0:
            branches.append("uncond")
        return tuple(branches)


def comparison_run(method: str, plan_kind: str, **settings) -> tuple[str, SamplerSettings]:
    """The segment-plan kind and settings of one method of a method comparison.

    Report names fix the anchor: `anchored_known` holds the source image as the shared clean
    anchor, `anchored_generated` generates one shared anchor (`generated_anchor_mode`), and
    the independent baseline generates its own anchor per segment. `anchored` keeps the
    anchor of `settings` (known by default), so a sweep can vary `sampling.anchor`. The
    autoregressive chain hands frames on in time order from the known source, so it always
    uses the contiguous plan.
    """
    anchors = dict(anchored_known="known", anchored_generated="generated",
                   independent="generated", autoregressive="known")  # fmt: skip
    if method != "anchored" and method not in anchors:
        raise ValueError(f"method: expected one of {['anchored', *anchors]}, got {method!r}")
    if method in anchors:
        settings["anchor"] = anchors[method]
    kind = "contiguous" if method == "autoregressive" else plan_kind
    sampler_method = "anchored" if method.startswith("anchored") else method
    settings["plan"] = kind
    return kind, SamplerSettings(method=sampler_method, **settings)


def training_window_s(config) -> float:
    """The longest anchor-to-frame time a run's training clips had, in seconds; 0 = no limit.

    What `max_anchor_gap_s = -1` ("auto") means, so a model is never asked about frame
    times further from the anchor than it was trained on. Clips whose anchor is drawn from
    anywhere in the video (`data.anchor_position = "anywhere"`) reach across whole videos:
    synthetic ones are `data.video_frames` long, and real videos are as long as they are, so
    there the answer is 0 (true times). Otherwise the clip spans at most `data.max_window`.
    """
    data = config.data
    if data.get("anchor_position", "first") == "anywhere":
        return (data.video_frames - 1) / data.fps if data.source == "synthetic" else 0.0
    return (data.max_window - 1) / data.fps
