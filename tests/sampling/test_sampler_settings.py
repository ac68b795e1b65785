"""The run config's `sampling` section and `SamplerSettings.from_config`: one place for
defaults, overrides and the "auto" anchor gap; every error names a real config field."""

import dataclasses
import json

import ml_collections
import pytest

from anchored_jax.sampling.sampler_settings import SamplerSettings, comparison_run
from configs import sdit


def test_config_section_names_exactly_the_settings_fields():
    for size in ("tiny", "S"):
        section = sdit.get_config(size).sampling
        assert set(section.keys()) == {f.name for f in dataclasses.fields(SamplerSettings)}


def test_tiny_settings_are_what_the_demo_sampled_with():
    # The demo's reenact/evaluate: DDIM, landmark guidance 1.75, correlated starting noise,
    # settled generated anchor, pixels clipped, evaluate's 5 steps; the anchor gap "auto"
    # resolves to the 1024-frame synthetic videos' span at 25 fps.
    settings = SamplerSettings.from_config(sdit.get_config("tiny"))
    assert settings == SamplerSettings(
        num_steps=5, landmark_scale=1.75, max_anchor_gap_s=1023 / 25.0, noise_correlation=0.97
    )
    assert settings.clip_x0 and settings.generated_anchor_mode == "settled"


def test_latent_sizes_do_not_clip_and_auto_gap_is_true_times_on_real_video():
    config = sdit.get_config("S")
    settings = SamplerSettings.from_config(config)
    assert settings.clip_x0 is False and settings.num_steps == 20
    # Latent runs read real videos whose anchors come from anywhere: no cap.
    assert settings.max_anchor_gap_s == 0.0
    config.data.anchor_position = "first"
    config.data.max_window = 51
    assert SamplerSettings.from_config(config).max_anchor_gap_s == pytest.approx(2.0)


def test_overrides_win_and_unset_flags_do_not():
    config = sdit.get_config("tiny")
    settings = SamplerSettings.from_config(
        config, num_steps=12, landmark_scale=None, max_anchor_gap_s=3, plan="random"
    )
    assert settings.num_steps == 12 and settings.landmark_scale == 1.75
    assert settings.max_anchor_gap_s == 3.0 and isinstance(settings.max_anchor_gap_s, float)
    assert settings.plan == "random"
    # -1 from a flag is "auto" too.
    assert SamplerSettings.from_config(config, max_anchor_gap_s=-1).max_anchor_gap_s == 40.92


def test_a_json_restored_config_gives_the_same_settings():
    config = sdit.get_config("tiny")
    restored = ml_collections.ConfigDict(json.loads(config.to_json()))
    restored.sampling.eta = 0  # JSON and hand edits give ints where floats are meant
    assert SamplerSettings.from_config(restored) == SamplerSettings.from_config(config)


def test_a_config_without_the_section_gets_the_library_defaults():
    config = sdit.get_config("tiny")
    del config["sampling"]
    assert SamplerSettings.from_config(config, num_steps=3) == SamplerSettings(num_steps=3)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_steps", 0, "sampling.num_steps: expected an int >= 1, got 0"),
        ("chunk_size", 2.5, "sampling.chunk_size: expected an int >= 1"),
        ("plan", "zigzag", "sampling.plan: expected one of"),
        ("method", "greedy", "sampling.method: expected one of"),
        ("sampler", "euler", "sampling.sampler: expected one of"),
        ("noise_correlation", 1.0, "sampling.noise_correlation: expected in [0, 1)"),
        ("eta", -0.5, "sampling.eta: expected >= 0"),
        ("landmark_scale", float("nan"), "sampling.landmark_scale: expected a finite number"),
        ("identity_scale", "2", "sampling.identity_scale: expected a number"),
        ("clip_x0", "yes", "sampling.clip_x0: expected True or False"),
        ("generated_anchor_mode", "late", "sampling.generated_anchor_mode: expected one of"),
    ],
)
def test_a_bad_field_is_one_line_naming_it(field, value, message):
    config = sdit.get_config("tiny")
    with pytest.raises(ValueError) as error:
        SamplerSettings.from_config(config, **{field: value})
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert field in config.sampling  # the field the message names is a real one


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"^sampling.steps: not a sampler setting; .*num_steps"):
        SamplerSettings.from_config(sdit.get_config("tiny"), steps=3)


def test_compiled_samplers_ignore_host_side_fields():
    a = SamplerSettings(plan="random", max_anchor_gap_s=4.0, noise_correlation=0.5)
    assert a.traced() == SamplerSettings(noise_correlation=0.0).traced()
    assert a.traced() != SamplerSettings(num_steps=3).traced()


def test_comparison_runs_record_their_plan():
    kind, settings = comparison_run("autoregressive", "random", num_steps=2)
    assert kind == "contiguous" and settings.plan == "contiguous"
    kind, settings = comparison_run("anchored_generated", "random", plan="strided")
    assert kind == "random" and settings.plan == "random" and settings.anchor == "generated"
