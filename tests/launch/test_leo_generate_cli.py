"""launch.generate: image -> alpha_1 -> LMDM codes (chain or anchored) -> frames."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from anchored_jax.diffusion.schedules import make_schedule
from anchored_jax.interop.export_inference import save_inference_checkpoint
from anchored_jax.interop.lia_import import lia_generator_params
from anchored_jax.pipelines.checkpoints import load_model
from anchored_jax.pipelines.leo import (
    animator_fns,
    compare_methods,
    generate_codes,
    render_codes,
)
from anchored_jax.sampling.leo_anchored_motion import anchored_motion
from anchored_jax.sampling.leo_motion_generation import chain_motion, sample_motion
from anchored_jax.training.checkpointing import RunCheckpoints
from anchored_jax.training.tasks.lmdm import init_lmdm
from configs import lmdm as lmdm_configs
from data_pipelines.inference_inputs import InputError as AnimateError
from data_pipelines.lmdm_codes import load_codes
from data_pipelines.motion_codes import read_code_file
from data_pipelines.video_decoding import probe_video
from launch.generate import compare, generate
from tests.cli_testing import run_module
from tests.launch.test_leo_animate_cli import TINY, lia_layout_state_dict, tiny_run_config

L, FRAMES = 6, 21  # 20 codes after alpha_1: 4 chunks / segments of 5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An imported-layout animator (LIA-style weights) and an LMDM training workdir."""
    root = tmp_path_factory.mktemp("generate")
    animator = root / "animator"
    params = lia_generator_params(TINY, lia_layout_state_dict())
    save_inference_checkpoint(str(animator), tiny_run_config(), params)
    config = lmdm_configs.get_config("tiny")
    config.data.code_source = "landmarks"  # the stand-in: no animator run in tests
    config.model.update(motion_dim=TINY.motion_dim, length=L, width=32, depth=1, num_heads=2)
    config.diffusion.sample_steps = 3
    config.data.num_test_identities = 1
    config.checkpoint.async_save = False
    # A trained LMDM's output layer is not 0 (a fresh one predicts 0 and so always x0 = 0).
    graphdef, _, state = init_lmdm(config, 0)
    model = nnx.merge(graphdef, state.params)
    model.out.kernel[...] = 0.3 * jax.random.normal(jax.random.key(1), model.out.kernel.shape)
    lmdm_params = nnx.state(model, nnx.Param)
    state = state.replace(params=lmdm_params, ema_params=lmdm_params)
    checkpoints = RunCheckpoints(str(root / "lmdm"), config.checkpoint)
    checkpoints.save(1, state, None, config)
    checkpoints.close()
    source = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    Image.fromarray(source).save(root / "first.png")
    return dict(root=root, animator=str(animator), lmdm=str(root / "lmdm"),
                first=str(root / "first.png"))  # fmt: skip


def test_both_methods_equal_the_library_and_chain_joins_are_continuous(runs, tmp_path):
    anim = load_model(runs["animator"], "animator", "--animator")
    lmdm = load_model(runs["lmdm"], "lmdm", "--lmdm")
    config, graphdef, params = lmdm
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.num_timesteps)
    fns = animator_fns(anim)
    first = np.asarray(Image.open(runs["first"]), np.float32) / 127.5 - 1.0
    alpha1 = np.asarray(fns[0](first[None])[2])
    kw = dict(num_frames=FRAMES, length=L, num_steps=3, prediction=config.diffusion.prediction)
    key = jax.random.key(0)
    out = {}
    for method in ("chain", "anchored"):
        out[method] = generate(
            "", "", runs["first"], str(tmp_path / f"{method}.mp4"), method=method,
            num_frames=FRAMES, batch_size=8, display=16, loaded=(anim, lmdm),
        )  # fmt: skip
        for suffix in ("_codes.npz", "_motion_norm.png"):
            assert os.path.isfile(tmp_path / f"{method}{suffix}")
        assert probe_video(str(tmp_path / f"{method}.mp4")).num_frames == FRAMES
    chained = chain_motion(graphdef, params, schedule, alpha1, key, **kw)
    anchored = anchored_motion(graphdef, params, schedule, alpha1, key, **kw)
    np.testing.assert_allclose(out["chain"]["codes"], chained, atol=1e-5)
    # generate splits the segments over the 8 test devices: equal up to float rounding.
    np.testing.assert_allclose(out["anchored"]["codes"], anchored, atol=1e-5, rtol=1e-5)
    saved = read_code_file(str(tmp_path / "anchored_codes.npz"))
    np.testing.assert_array_equal(saved, out["anchored"]["codes"])
    # Frames are the first frame moved by each code (absolute), frame 0 by alpha_1 itself.
    video = render_codes(fns, first, saved[0], mode="absolute", batch_size=8)
    assert video.shape == (FRAMES, 16, 16, 3) and np.isfinite(video).all()
    # Chain: chunk c starts exactly at chunk c-1's last code and continues from it.
    keys = jax.random.split(key, 4)
    for c in (1, 2, 3):
        start = c * (L - 1)
        chunk = sample_motion(graphdef, params, schedule, np.asarray(chained[:, start]), keys[c],
                              length=L, num_steps=3, prediction=kw["prediction"])  # fmt: skip
        np.testing.assert_allclose(chained[:, start : start + L], chunk, atol=1e-4)
    # --compare: both methods from held-out first codes, statistics and plot written.
    results = compare(lmdm, str(tmp_path / "cmp.png"), num_frames=FRAMES, sequences=1)
    with open(tmp_path / "cmp.json") as f:
        saved = json.load(f)
    for method in ("chain", "anchored"):
        assert saved[method]["finite"] and len(saved[method]["norm_mean"]) == 8
        assert saved[method]["norm_mean"] == results[method]["norm_mean"]
    assert os.path.isfile(tmp_path / "cmp.png")
    # The training split holds the videos it has (the synthetic held-out split grows: below).
    train_videos = lmdm[0].data.num_train_identities * lmdm[0].data.videos_per_identity
    with pytest.raises(
        ValueError, match=rf"--first_sequence: expected < {train_videos} \(train videos\)"
    ):
        compare(lmdm, str(tmp_path / "cmp2.png"), num_frames=FRAMES, sequences=1,
                split="train", first_sequence=train_videos)  # fmt: skip
    with pytest.raises(ValueError, match=r"--sequences: expected 1\.\.1 \(held-out videos\)"):
        compare(lmdm, str(tmp_path / "cmp2.png"), num_frames=FRAMES, sequences=2,
                split="train", first_sequence=train_videos - 1)  # fmt: skip
    with pytest.raises(AnimateError, match="--first-frame .*missing.png: no such image file"):
        generate("", "", str(tmp_path / "missing.png"), str(tmp_path / "x.mp4"),
                 method="chain", num_frames=8, loaded=(anim, lmdm))  # fmt: skip
    with pytest.raises(ValueError, match="--method: expected one of"):
        generate("", "", runs["first"], str(tmp_path / "x.mp4"), method="loop", num_frames=8,
                 loaded=(anim, lmdm))  # fmt: skip


def test_compare_from_later_held_out_videos_than_the_run_evaluates(runs, tmp_path):
    lmdm = load_model(runs["lmdm"], "lmdm", "--lmdm")
    assert lmdm[0].data.num_test_identities == 1
    # Videos 1 and 2 of the synthetic held-out split: made for the comparison, the same faces
    # a run holding 3 test identities has.
    results = compare(lmdm, str(tmp_path / "later.png"), num_frames=FRAMES, sequences=2,
                      first_sequence=1)  # fmt: skip
    assert results["videos"] == [1, 3]
    wider = lmdm[0].copy_and_resolve_references()
    wider.data.num_test_identities = 3
    real = load_codes(wider, "test")
    expected, _ = compare_methods(lmdm, real[1:], num_frames=FRAMES, sequences=2)
    for method in ("chain", "anchored"):
        assert results[method]["norm_mean"] == expected[method]["norm_mean"]
    # ... and not the run's own first video's.
    first, _ = compare_methods(lmdm, real, num_frames=FRAMES, sequences=2)
    assert results["anchored"]["norm_mean"] != first["anchored"]["norm_mean"]
    result = run_module(
        "launch.generate", "--lmdm", runs["lmdm"], "--compare", "--frames", FRAMES,
        "--first_sequence", -1, "--out", tmp_path / "bad.png",
    )  # fmt: skip
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == "error: --first_sequence: expected >= 0, got -1"
    with pytest.raises(ValueError, match=r"--first_sequence 2000000 \+ --sequences 4: expected at"):
        compare(lmdm, str(tmp_path / "far.png"), num_frames=FRAMES, sequences=4,
                first_sequence=2_000_000)  # fmt: skip


def test_generate_command_line(runs, tmp_path):
    out = tmp_path / "gen.mp4"
    result = run_module(
        "launch.generate", "--animator", runs["animator"], "--lmdm", runs["lmdm"],
        "--first-frame", runs["first"], "--frames", 16, "--method", "anchored", "--out", out,
        "--display_size", 16,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert probe_video(str(out)).num_frames == 16
    codes = read_code_file(str(tmp_path / "gen_codes.npz"))
    assert codes.shape == (1, 16, TINY.motion_dim) and np.isfinite(codes).all()
    assert os.path.isfile(tmp_path / "gen_motion_norm.png")


def test_guidance_comes_from_the_run_and_a_flag_overrides_it(runs):
    lmdm = load_model(runs["lmdm"], "lmdm", "--lmdm")
    # Not 0: a fresh null code is 0, so a zero alpha_1 would read the same as no condition.
    first = np.random.default_rng(0).normal(size=(2, TINY.motion_dim)).astype(np.float32)
    kw = dict(num_frames=FRAMES, seed=0)
    for method in ("chain", "anchored"):
        default = generate_codes(lmdm, first, method=method, **kw)
        np.testing.assert_array_equal(
            generate_codes(lmdm, first, method=method, guidance=1.0, **kw), default
        )
        mixed = generate_codes(lmdm, first, method=method, guidance=0.5, **kw)
        assert np.abs(mixed - default).max() > 1e-3, method  # the null code's pull shows
    with pytest.raises(ValueError, match=r"--guidance: expected a scale in \[0, 10\], got -1"):
        generate_codes(lmdm, first, method="chain", guidance=-1.0, **kw)
