"""`launch.evaluate`'s report on a small sDiT checkpoint: numbers, files, resume, skipped notes."""

import glob
import json
import os
import types

import av
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from PIL import Image
from safetensors.numpy import save_file

from anchored_jax.evaluation import metric_suite, report
from anchored_jax.evaluation.consistency_metrics import psnr_T
from anchored_jax.evaluation.frechet import feature_statistics, frechet_distance
from anchored_jax.evaluation.image_metrics import ssim
from anchored_jax.evaluation.inception_v3 import InceptionV3Features, load_inception
from anchored_jax.evaluation.lpips import load_lpips
from anchored_jax.evaluation.segment_metrics import (
    frame_change_T,
    pooled_seam_ratio,
    segment_owner_T,
    segment_spread,
)
from anchored_jax.evaluation.torch_layout_layers import torch_layout
from anchored_jax.evaluation.video_statistics import laplacian_T
from anchored_jax.pipelines.checkpoints import load_sdit as load_sdit_for_inference
from anchored_jax.sampling.segment_plan import plan_segments
from anchored_jax.training.sdit_setup import build_model
from anchored_jax.training.train_state import split_model
from data_pipelines.inference_inputs import held_out_video, to_unit_range
from launch import evaluate
from launch.evaluate import run_report
from tests.cli_testing import one_line_error, run_module
from tests.launch.test_reenact_cli import small_run_config

FRAMES, CLIPS = 9, 2
METHODS = ("anchored_known", "autoregressive")
KW = dict(frames=FRAMES, clips=CLIPS, methods=METHODS, plans=("contiguous",), seeds=(0, 1),
          num_steps=2, chunk_size=2, display=32)  # fmt: skip
INCEPTION = dict(width=0.125, image_size=75)  # the real network's code, narrow and small


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An exported checkpoint, its loaded params, and narrow Inception weights in torch layout."""
    root = tmp_path_factory.mktemp("eval")
    config = small_run_config()
    export = root / "export"
    os.makedirs(export)
    (export / "config.json").write_text(config.to_json_best_effort(indent=2))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(str(export / "ema_params"), _random_params(config))
    rng = np.random.default_rng(0)
    layout = torch_layout(nnx.eval_shape(lambda: InceptionV3Features(width=INCEPTION["width"])))
    weights = {k: _he_init(rng, k, s) for k, s in layout.items()}
    save_file(weights, str(root / "inception.safetensors"))
    return dict(
        export=str(export),
        loaded=load_sdit_for_inference(str(export)),
        config=config,
        inception=str(root / "inception.safetensors"),
        lpips=_lpips_folder(root),
        root=root,
    )


def _random_params(config):
    """Random sDiT parameters from the model's shapes (no eager init: seconds, not a minute)."""
    _, abstract = split_model(nnx.eval_shape(lambda: build_model(config, config.seed)))
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda x: (0.05 * rng.standard_normal(x.shape)).astype(x.dtype), abstract)


def _he_init(rng, key, shape):
    """Conv weights that keep the activations' scale through the depth; identity batch norms."""
    if key.endswith(("running_var", "bn.weight")):
        return np.ones(shape, np.float32)
    if len(shape) < 2:
        return np.zeros(shape, np.float32)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)


ALEX_CONVS = ((64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3), (256, 256, 3))


def _lpips_folder(root) -> str:
    """torchvision AlexNet `features` and lpips `lin<i>` weights, as `--lpips_weights DIR` takes."""
    rng = np.random.default_rng(2)
    backbone, linear = {}, {}
    for i, (index, (c_out, c_in, k)) in enumerate(zip((0, 3, 6, 8, 10), ALEX_CONVS)):
        std = np.sqrt(2.0 / (c_in * k * k))
        backbone[f"features.{index}.weight"] = rng.normal(0, std, (c_out, c_in, k, k))
        backbone[f"features.{index}.bias"] = np.zeros(c_out)
        linear[f"lin{i}.model.1.weight"] = rng.uniform(0, 1, (1, c_out, 1, 1))
    folder = root / "lpips"
    os.makedirs(folder)
    for name, weights in (("alexnet-test.safetensors", backbone), ("alex.safetensors", linear)):
        save_file({k: v.astype(np.float32) for k, v in weights.items()}, str(folder / name))
    return str(folder)


def _suite(setup):
    # LPIPS through the flag's folder form; Inception narrow, so loaded here.
    suite = metric_suite.build_suite(lpips_weights=setup["lpips"])
    suite.inception = load_inception(setup["inception"], **INCEPTION)
    del suite.skipped["fid"]
    return suite


def test_report_numbers_files_and_skipped_notes(setup, tmp_path, monkeypatch):
    monkeypatch.setenv("ANCHORED_JAX_FACE_MODELS", str(tmp_path / "no_face_models"))
    suite = metric_suite.build_suite()
    assert suite.skipped["lpips"] == "skipped: no --lpips_weights given"
    assert suite.skipped["fvd"] == "skipped: no --i3d_weights given"
    # No landmark extractor here: AKD is skipped with the extractor's one-line reason.
    assert suite.skipped["akd"].startswith("skipped: ") and "landmark" in suite.skipped["akd"]
    out = str(tmp_path / "report")
    metrics = run_report(setup["export"], out, suite=_suite(setup), loaded=setup["loaded"], **KW)
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f) == json.loads(json.dumps(metrics))
    table = metrics["plans"]["contiguous"]
    assert list(table["methods"]) == [*METHODS, "copy_source"]
    assert set(metrics["skipped"]) == {"fvd", "csim_aed", "akd"}

    # The copy-source row, recomputed directly from the held-out frames with the libraries.
    source = held_out_video(setup["config"], 0, FRAMES)
    real = np.stack([to_unit_range(source.read_frames(c, np.arange(FRAMES))) for c in range(2)])
    landmarks = [source[c].landmarks_TLC[:FRAMES] for c in range(CLIPS)]
    copy = np.broadcast_to(real[:, :1], real.shape)
    row, row_std = table["methods"]["copy_source"]["mean"], table["methods"]["copy_source"]["std"]
    psnr = np.concatenate([psnr_T(copy[c], real[c])[1:] for c in range(CLIPS)])
    np.testing.assert_allclose(row["psnr_mean"], psnr.mean(), rtol=1e-12)
    assert row_std["psnr_mean"] == 0.0  # copy-source does not depend on the seed
    np.testing.assert_allclose(row["psnr_by_distance"]["1-32"], psnr.mean(), rtol=1e-12)
    quarters = [np.array_split(psnr_T(copy[c], real[c])[1:], 4) for c in range(CLIPS)]
    np.testing.assert_allclose(
        row["psnr_quarter_change"], np.mean([q[-1].mean() - q[0].mean() for q in quarters])
    )
    frames_N = real[:, 1:].reshape(-1, *real.shape[2:])
    # SSIM on frames mapped to [0, 1], data range 1 (the convention of 8-bit image papers).
    unit = lambda a: (a + 1.0) / 2.0  # noqa: E731
    ssim_N = ssim(unit(copy[:, 1:].reshape(frames_N.shape)), unit(frames_N), data_range=1.0)
    np.testing.assert_allclose(row["ssim_mean"], float(np.mean(ssim_N)), rtol=1e-5)
    inception = load_inception(setup["inception"], **INCEPTION)
    fid = frechet_distance(
        *feature_statistics(np.asarray(inception(copy[:, 1:].reshape(frames_N.shape)), np.float64)),
        *feature_statistics(np.asarray(inception(frames_N), np.float64)),
    )
    np.testing.assert_allclose(row["fid"], fid, rtol=1e-4)
    lpips = load_lpips("alex", *metric_suite.lpips_files(setup["lpips"], "alex"))
    lpips_N = lpips(copy[:, 1:].reshape(frames_N.shape), frames_N)
    np.testing.assert_allclose(row["lpips_mean"], float(np.mean(lpips_N)), rtol=1e-5)
    tde = np.abs(np.diff(real, axis=1)).mean(axis=(2, 3, 4))  # copy-source does not move
    np.testing.assert_allclose(row["tde_mean"], tde.mean(), rtol=1e-5)
    # Consistency: no seams, no flicker; sharpness of the source against the real frames.
    assert row["seam_ratio"] is None and row["flicker_ratio"] == 0.0
    lap = lambda v: laplacian_T(v)[1:]  # noqa: E731
    np.testing.assert_allclose(
        row["sharpness_ratio"],
        np.concatenate([lap(c) for c in copy]).mean()
        / np.concatenate([lap(r) for r in real]).mean(),
    )
    K = setup["config"].data.clip_frames
    owner = segment_owner_T(plan_segments(FRAMES, K, 0, "contiguous"))
    spread = [segment_spread(copy[c], landmarks[c], owner)["spread"] for c in range(CLIPS)]
    np.testing.assert_allclose(row["spread"], np.mean(spread), rtol=1e-9)
    # The real video's reference row: its own seam ratio and spread on the same plan.
    ref = table["real"]["mean"]
    seam = pooled_seam_ratio([frame_change_T(r) for r in real], [owner] * CLIPS)["seam_ratio"]
    np.testing.assert_allclose(ref["seam_ratio"], seam, rtol=1e-9)
    spread = [segment_spread(real[c], landmarks[c], owner)["spread"] for c in range(CLIPS)]
    np.testing.assert_allclose(ref["spread"], np.mean(spread), rtol=1e-9)

    for method in METHODS:
        stats = table["methods"][method]
        r = stats["mean"]
        assert r["frames"] == CLIPS * (FRAMES - 1) and np.isfinite(r["fid"]) and r["fid"] > 0
        assert 0 < r["ssim_mean"] < 1 and r["psnr_mean"] > 0 and metrics["seconds"][method] > 0
        assert r["lpips_mean"] > 0 and r["seam_ratio"] > 0 and r["flicker_ratio"] > 0
        per_seed = [stats["per_seed"][s]["psnr_mean"] for s in ("0", "1")]
        np.testing.assert_allclose(r["psnr_mean"], np.mean(per_seed))
        np.testing.assert_allclose(stats["std"]["psnr_mean"], np.std(per_seed, ddof=1))
        assert per_seed[0] != per_seed[1]  # the seeds are different noise

    with open(os.path.join(out, "report.md")) as f:
        text = f.read()
    assert "### Consistency, plan `contiguous`" in text and "| real video (reference) |" in text
    assert "| anchored_known | " in text and " ± " in text and "- fvd: skipped: no" in text
    assert "![PSNR (dB), plan contiguous](psnr_vs_distance_contiguous.png)" in text
    for png in ("drift_vs_distance_contiguous.png", "psnr_vs_distance_contiguous.png"):
        assert Image.open(os.path.join(out, png)).size == (900, 480)
    strip = Image.open(os.path.join(out, "frame_strip.png"))
    assert strip.size[1] == 110 * (1 + len(METHODS)) + 60  # rows: real and each method
    assert glob.glob(os.path.join(out, "tb", "events.out.tfevents.*"))
    with av.open(os.path.join(out, "clip0_contiguous_comparison.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES and frames[0].shape == (32, 32 * (3 + len(METHODS)), 3)


def test_an_interrupted_report_resumes_to_the_same_metrics(setup, tmp_path, monkeypatch):
    # Without FaceMesh files AKD is skipped: FaceMesh finds no face in 32-pixel frames, and its
    # NaN would compare unequal to itself.
    monkeypatch.setenv("ANCHORED_JAX_FACE_MODELS", str(tmp_path / "no_face_models"))
    kw = dict(suite=metric_suite.build_suite(), loaded=setup["loaded"], **KW)
    whole = run_report(setup["export"], str(tmp_path / "whole"), **kw)
    out = str(tmp_path / "resumed")
    assert run_report(setup["export"], out, max_parts=3, **kw) is None  # stopped: no report
    parts = sorted(os.listdir(os.path.join(out, "parts")))
    assert parts == ["anchored_known_contiguous_s0_0.npz", "copy_source_0.npz",
                     "reference_0.npz", "settings.json"]  # fmt: skip
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    mtimes = {p: os.stat(os.path.join(out, "parts", p)).st_mtime_ns for p in parts}
    resumed = run_report(setup["export"], out, **kw)
    for p, mtime in mtimes.items():  # finished parts were loaded, not computed again
        assert os.stat(os.path.join(out, "parts", p)).st_mtime_ns == mtime
    del whole["seconds"], resumed["seconds"]  # wall times are the only difference
    assert resumed == whole
    with pytest.raises(ValueError, match="computed with steps=2, not 3"):
        run_report(setup["export"], out, **{**kw, "num_steps": 3})


CLI_ARGS = ("--frames", "5", "--clips", "1", "--steps", "1", "--methods", "anchored",
            "--plan", "contiguous", "--seeds", "0", "--display_size", "32")  # fmt: skip


def _flags(**changes):
    """The command's defaults as parsed flags, with some changed."""
    defaults = dict(data="", frames=512, clips=2, methods=None, anchor="both",
                    plan=["contiguous", "random"], seeds=["0", "1"], guidance="1,1.75", steps=5,
                    chunk_size=32, max_anchor_gap=0.0, vae="", akd_landmarks="auto",
                    noise_correlation=evaluate.DEFAULT_SETTINGS.noise_correlation,
                    generated_anchor=evaluate.DEFAULT_SETTINGS.generated_anchor_mode,
                    sample_clips=1, display_size=128, max_parts=0, leo_videos=8)  # fmt: skip
    return types.SimpleNamespace(**{**defaults, **changes})


def test_default_study_and_every_bad_flag_in_one_line(setup, tmp_path):
    options = evaluate.check_flags(_flags())
    assert options["methods"] == ["anchored_known", "anchored_generated", "independent",
                                  "autoregressive"]  # fmt: skip
    assert options["plans"] == ["contiguous", "random"] and options["seeds"] == [0, 1]
    assert (options["frames"], options["num_steps"], options["max_anchor_gap_s"]) == (512, 5, 0)
    assert options["guidance"] == (1.0, 1.75)
    bad = {
        "frames": 1, "clips": 0, "steps": 0, "chunk_size": -1, "sample_clips": -1,
        "methods": ["anchored", "dreams"], "anchor": "maybe", "plan": [], "seeds": ["-2"],
        "guidance": "1", "max_anchor_gap": -3.0, "akd_landmarks": "dlib", "data": "webcam",
        "noise_correlation": 1.0, "generated_anchor": "later",
    }  # fmt: skip
    for flag, value in bad.items():
        with pytest.raises(ValueError) as error:
            evaluate.check_flags(_flags(**{flag: value}))
        name = {"plan": "plan", "data": "data"}.get(flag, flag)
        assert str(error.value).startswith(f"--{name}: expected"), str(error.value)
        assert "\n" not in str(error.value)
    # Through the command line: the flag is refused before the checkpoint is even looked at.
    result = run_module("launch.evaluate", "--checkpoint", tmp_path / "missing", "--frames", "1",
                        "--out", tmp_path / "bad")  # fmt: skip
    assert one_line_error(result) == "error: --frames: expected an int >= 2, got 1"
    result = run_module("launch.evaluate", "--checkpoint", setup["export"], *CLI_ARGS,
                        "--data", "webcam", "--out", tmp_path / "bad")  # fmt: skip
    assert "--data: expected '', synthetic, video_dir:ROOT" in one_line_error(result)
    with pytest.raises(ValueError, match=r"^--inception_weights \S+no.pth: no such file$"):
        metric_suite.build_suite(inception_weights=str(tmp_path / "no.pth"))
    with pytest.raises(ValueError, match="--lpips_weights .*: expected alex.pth"):
        metric_suite.build_suite(lpips_weights=str(tmp_path))


@pytest.mark.slow
def test_cli_writes_the_documented_report(setup, tmp_path):
    result = run_module("launch.evaluate", "--checkpoint", setup["export"], *CLI_ARGS,
                        "--out_dir", tmp_path / "cli")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "cli" / "metrics.json") as f:
        metrics = json.load(f)
    assert list(metrics["plans"]["contiguous"]["methods"]) == ["anchored_known", "copy_source"]
    assert metrics["skipped"]["fid"] == "skipped: no --inception_weights given"
    assert "| anchored_known |" in result.stdout


def _export_leo(root, name: str, config, params) -> str:
    """A LEO part in the inference-checkpoint layout `launch.animate` loads."""
    path = root / name
    os.makedirs(path)
    (path / "config.json").write_text(config.to_json_best_effort(indent=2))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(str(path / "ema_params"), params)
    return str(path)


def _random_like(abstract, seed=0):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: (0.05 * rng.standard_normal(x.shape)).astype(x.dtype), abstract)


@pytest.mark.slow  # about a minute on 2 busy cores: the animator's compile
def test_leo_animator_and_motion_reports(tmp_path, monkeypatch):
    import optax

    from anchored_jax.evaluation import keypoint_metrics
    from anchored_jax.sampling.leo_motion_generation import delta_statistics
    from anchored_jax.training.leo_animator_step import init_animator
    from anchored_jax.training.tasks.lmdm import init_lmdm
    from configs.lmdm import get_config as lmdm_config
    from data_pipelines.frame_pairs import make_pair_source, read_videos
    from data_pipelines.lmdm_codes import load_codes
    from data_pipelines.motion_codes import code_windows
    from data_pipelines.synthetic_faces import FACTORS
    from launch.evaluate import evaluate_animator, evaluate_lmdm
    from tests.launch.test_leo_train_animator import tiny_run_config

    anim = tiny_run_config()
    _, state = jax.eval_shape(lambda: init_animator(anim, 0, optax.adam(1e-3), optax.adam(1e-3)))
    animator = _export_leo(tmp_path, "animator", anim, _random_like(state.gen_params))
    # A stand-in landmark extractor (the real regressor's first build takes ~1.5 minutes): it
    # finds every landmark at the frame centre, so every AKD is the exact landmarks' mean
    # distance from the centre over frames 1...
    centre = lambda frames: np.full((len(frames), 68, 2), 0.5, np.float32)  # noqa: E731
    monkeypatch.setattr(keypoint_metrics, "landmark_extractor", lambda kind: centre)
    rows = evaluate_animator(animator, videos=2, frames=4)
    real = read_videos(anim.data, "test", 2, 4)
    copy = np.broadcast_to(real[:, :1], real.shape)
    np.testing.assert_allclose(rows["copy_source"]["l1"], np.abs(copy - real)[:, 1:].mean())
    source = make_pair_source(anim.data, "test")
    exact = np.stack([source[v].landmarks_TLC[:4, :, :2] for v in range(2)])
    want_akd = np.sqrt(np.square((exact[:, 1:] - 0.5) * 32).sum(-1)).mean()
    for akd in (rows["animator"]["akd_px"], rows["copy_source"]["akd_px"], rows["akd_floor_px"]):
        np.testing.assert_allclose(akd, want_akd, rtol=1e-5)
    assert rows["videos"] == 2 and rows["frames"] == 4
    probe = rows["code_probe_r2"]  # random weights: R² of at most 1 per factor, finite
    assert list(probe) == list(FACTORS) and all(v <= 1.0 for v in probe.values())
    assert 0 < rows["animator"]["l1"] < 2 and np.isfinite(rows["animator"]["psnr"])

    config = lmdm_config("tiny")
    config.model.update(width=16, depth=1, num_heads=2, length=4)
    config.data.update(num_test_identities=1, videos_per_identity=2, video_frames=16)
    config.data.code_source = "landmarks"  # the stand-in: no animator run in tests
    config.diffusion.sample_steps = 2
    lmdm_state = jax.eval_shape(lambda: init_lmdm(config, 0)[2])
    lmdm = _export_leo(tmp_path, "lmdm", config, _random_like(lmdm_state.ema_params, seed=1))
    motion = evaluate_lmdm(lmdm, sequences=3)
    windows = code_windows(load_codes(config, "test"), 4, 4)
    real_windows = windows[np.random.default_rng(0).permutation(len(windows))[:3]]
    assert motion["real_delta_mean"] == delta_statistics(real_windows)["delta_mean"]
    assert motion["sequences"] == 3 and motion["generated_delta_mean"] > 0

    report.write_report(str(tmp_path / "leo"), {"leo": {"animator": rows, "lmdm": motion}})
    text = (tmp_path / "leo" / "report.md").read_text()
    assert "| copy_source |" in text and "| generated |" in text
    assert "| AKD (px) |" in text
    copy_row = rows["copy_source"]
    assert f"| {copy_row['ssim']:.3f} | {copy_row['akd_px']:.2f} |" in text
    assert f"| real frames | 0 | — | 1 | {rows['akd_floor_px']:.2f} |" in text
    assert "| x | y | roll | scale | yaw | eyes_closed | mouth_open | brow_raise |" in text
