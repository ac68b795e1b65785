"""The study's methods, plans, seeds and guidance: defaults, old names, and one-line errors."""

import re

import pytest

from anchored_jax.evaluation import study_options as so
from anchored_jax.sampling.sampler_settings import comparison_run


def test_methods_default_to_all_four_with_anchor_choosing_the_anchored_ones():
    assert so.resolve_methods(None) == list(so.REPORT_METHODS)
    assert so.resolve_methods(None, "known") == ["anchored_known", "independent", "autoregressive"]
    assert so.resolve_methods(None, "generated")[0] == "anchored_generated"
    # Listed methods are taken as given, in report order; old `anchored` = anchored_known.
    assert so.resolve_methods(["autoregressive", "anchored"]) == [
        "anchored_known",
        "autoregressive",
    ]
    assert so.resolve_methods(["independent", "copy_source"]) == ["independent"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: so.resolve_methods(["anchord"]), "--methods: expected a non-empty subset"),
        (lambda: so.resolve_methods([]), "--methods: expected a non-empty subset"),
        (lambda: so.resolve_methods(None, "both_ways"), "--anchor: expected one of"),
        (lambda: so.check_plans([]), "--plan: expected a non-empty list"),
        (lambda: so.check_plans(["contiguous", "spiral"]), "--plan: expected a non-empty list"),
        (lambda: so.check_seeds([]), "--seeds: expected distinct ints >= 0, got []"),
        (lambda: so.check_seeds(["0", "-1"]), "--seeds: expected distinct ints >= 0"),
        (lambda: so.check_seeds(["0", "0"]), "--seeds: expected distinct ints >= 0"),
        (lambda: so.check_seeds(["x"]), "--seeds: expected distinct ints >= 0"),
        (lambda: so.parse_guidance("2"), "--guidance: expected IDENTITY_SCALE,LANDMARK_SCALE"),
        (lambda: so.parse_guidance("1,-1"), "--guidance: expected IDENTITY_SCALE"),
        (lambda: so.parse_guidance("a,b"), "--guidance: expected IDENTITY_SCALE"),
        (lambda: so.check_anchor_gap(-0.5), "--max_anchor_gap: expected seconds >= 0"),
        (lambda: so.check_count("--frames", 1, 2), "--frames: expected an int >= 2, got 1"),
        (lambda: so.check_count("--steps", 0, 1), "--steps: expected an int >= 1, got 0"),
        (lambda: so.landmark_kind("dlib", "synthetic"), "--akd_landmarks: expected one of"),
    ],
)
def test_bad_values_raise_one_line_naming_the_flag(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}") as error:
        call()
    assert "\n" not in str(error.value)


def test_good_values_parse():
    assert so.check_plans(["random", "contiguous", "random"]) == ["random", "contiguous"]
    assert so.check_seeds(["3", "0"]) == [3, 0]
    assert so.parse_guidance("1.5,2") == (1.5, 2.0) and so.parse_guidance((1, 1)) == (1.0, 1.0)
    assert so.check_anchor_gap(-1) == -1.0 and so.check_anchor_gap(0) == 0.0
    assert so.landmark_kind("auto", "synthetic") == "synthetic"
    assert so.landmark_kind("auto", "video_dir") == "mediapipe"
    assert so.landmark_kind("", "synthetic") == ""


def test_comparison_run_fixes_each_methods_anchor_and_plan():
    kw = dict(num_steps=3, chunk_size=2, identity_scale=1.5, landmark_scale=2.0)
    expected = {
        "anchored_known": ("random", "anchored", "known"),
        "anchored_generated": ("random", "anchored", "generated"),
        "independent": ("random", "independent", "generated"),
        "autoregressive": ("contiguous", "autoregressive", "known"),
    }
    for name, (kind, method, anchor) in expected.items():
        got_kind, settings = comparison_run(name, "random", **kw)
        assert (got_kind, settings.method, settings.anchor) == (kind, method, anchor)
        assert settings.identity_scale == 1.5 and settings.landmark_scale == 2.0
    # `anchored` keeps the sweep's own anchor; a generated one may not reach autoregressive.
    assert comparison_run("anchored", "strided", anchor="generated")[1].anchor == "generated"
    assert comparison_run("autoregressive", "random", anchor="generated")[1].anchor == "known"
    with pytest.raises(ValueError, match="^method: expected one of"):
        comparison_run("chain", "random")
