"""The evaluation command's metrics: per-clip scores of each method, then pooled per method.

`build_suite` loads the networks whose weights are given (LPIPS, Inception-v3 for FID, I3D for
FVD, an identity embedder for CSIM/AED, a landmark extractor for AKD); each metric it cannot
compute gets a one-line `skipped` reason instead of a number. `score_clip` scores one
generated clip against ground truth and keeps everything the pooled metrics need (per-frame
arrays, features, embeddings, landmarks) as flat numpy arrays, so the caller can save it as
one `.npz` part and resume. `reference_clip` does the same for the real clip (features of the
real frames, the source's identity embedding). `summarize_suite` pools the parts per method:

- per-frame means over frames 1.. (frame 0 is the source, the anchor): L1, PSNR, SSIM
  (scikit-image's Gaussian SSIM on [-1, 1] frames, data range 2), LPIPS, face-colour drift,
  with the consistency study's slopes and distance curves (`consistency_study.summarize`);
- temporal: the temporal difference error (consecutive-frame change vs ground truth's) and the
  mean consecutive-frame difference of the output and of the real video;
- distribution: FID over the frames and FVD over 16-frame windows, each against the real clips,
  as the Fréchet distance of the pooled features (few frames bias both upwards: compare them
  between methods of one report, not with papers' numbers on thousands of clips);
- identity: CSIM/AED of each output frame's embedding vs the source's; motion: AKD between
  landmarks extracted from output and real frames, and its floor: the extractor on the real
  frames against the data's own landmarks (exact for the synthetic renderer);
- consistency between segments (`segment_metrics`): the seam ratio on the plan that made the
  video and the spread of segment colours; PSNR per distance bin and its first-to-last
  quarter change (`distance_bins`); sharpness and flicker as ratios to the real video's
  (`video_statistics`). The real video's seam ratio and spread on the same plan are the
  reference (`real` row).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable

import numpy as np

from anchored_jax.evaluation import distance_bins, segment_metrics, video_statistics
from anchored_jax.evaluation.consistency_study import METRICS, frame_metrics, summarize

FVD_WINDOW = 16  # frames per FVD window (the I3D clip length of the FVD paper)
BATCH = 16  # images per network call: bounds the memory of 299/224 px inputs
FRAME_KEYS = (*METRICS, "distance", "moved")  # what consistency_study.summarize pools
OPTIONAL = ("lpips", "fid", "fvd", "csim_aed", "akd")


def _module(name: str):
    """An evaluation module, or None when it is not importable (then its metric is skipped)."""
    try:
        return importlib.import_module(f"anchored_jax.evaluation.{name}")
    except ImportError:
        return None


def _batched(fn: Callable, x_N: np.ndarray, batch: int = BATCH) -> np.ndarray:
    return np.concatenate(
        [np.asarray(fn(x_N[i : i + batch]), np.float64) for i in range(0, len(x_N), batch)]
    )


@dataclasses.dataclass
class MetricSuite:
    """The loaded networks (None: skipped) and why each missing metric is skipped."""

    lpips: Callable | None = None
    inception: Callable | None = None
    i3d: Callable | None = None
    identity: Callable | None = None
    landmarks: Callable | None = None
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)


def lpips_files(spec: str, net: str) -> tuple[str, str]:
    """(backbone, linear) weight files from `BACKBONE,LINEAR` or a folder holding both.

    In a folder, the linear layers are `<net>.pth` (the `lpips` package's file name) and the
    backbone the other file named like torchvision's (`alexnet*` or `vgg16*`).
    """
    if "," in spec:
        backbone, linear = spec.split(",", 1)
    elif os.path.isdir(spec):
        stem = {"alex": "alexnet", "vgg": "vgg16"}[net]
        names = sorted(os.listdir(spec))
        linear = next((n for n in names if n in (f"{net}.pth", f"{net}.safetensors")), "")
        backbone = next((n for n in names if n.startswith(stem)), "")
        if not linear or not backbone:
            raise ValueError(
                f"--lpips_weights {spec}: expected {net}.pth (lpips linear layers) and a "
                f"{stem}* torchvision state dict in the folder, found {names}"
            )
        backbone, linear = os.path.join(spec, backbone), os.path.join(spec, linear)
    else:
        raise ValueError(
            f"--lpips_weights {spec}: expected BACKBONE,LINEAR files or a folder holding both"
        )
    for path in (backbone, linear):
        if not os.path.isfile(path):
            raise ValueError(f"--lpips_weights: no such file {path}")
    return backbone, linear


def _load(skipped: dict, metric: str, flag: str, path: str, module: str, loader: str, *args):
    """`module.loader(*args)`, or None with the metric's skipped reason."""
    if not path:
        skipped[metric] = f"skipped: no {flag} given"
        return None
    mod = _module(module)
    if mod is None:
        skipped[metric] = f"skipped: anchored_jax.evaluation.{module} is not available"
        return None
    return getattr(mod, loader)(*args)


def _check_file(flag: str, path: str) -> None:
    if path and not os.path.exists(path):
        raise ValueError(f"{flag} {path}: no such file")


def build_suite(
    *,
    lpips_weights: str = "",
    lpips_net: str = "alex",
    inception_weights: str = "",
    i3d_weights: str = "",
    identity_weights: str = "",
    landmarks: str = "mediapipe",
) -> MetricSuite:
    """Loads what the given weights allow; a bad weights path raises one ValueError line."""
    for flag, path in (
        ("--inception_weights", inception_weights),
        ("--i3d_weights", i3d_weights),
        ("--identity_weights", identity_weights),
    ):
        _check_file(flag, path)
    suite = MetricSuite()
    skipped = suite.skipped
    lpips_args = (lpips_net, *lpips_files(lpips_weights, lpips_net)) if lpips_weights else ()
    suite.lpips = _load(
        skipped, "lpips", "--lpips_weights", lpips_weights, "lpips", "load_lpips", *lpips_args
    )
    suite.inception = _load(
        skipped, "fid", "--inception_weights", inception_weights, "inception_v3",
        "load_inception", inception_weights,
    )  # fmt: skip
    suite.i3d = _load(skipped, "fvd", "--i3d_weights", i3d_weights, "i3d", "load_i3d", i3d_weights)
    suite.identity = _load(
        skipped, "csim_aed", "--identity_weights", identity_weights, "identity_embedding",
        "load_identity_embedder", identity_weights,
    )  # fmt: skip
    for metric in ("fid", "fvd"):
        if metric not in skipped and _module("frechet") is None:
            skipped[metric] = "skipped: anchored_jax.evaluation.frechet is not available"
    keypoints = _module("keypoint_metrics")
    if not landmarks:
        skipped["akd"] = "skipped: no landmark extractor asked for (--akd_landmarks '')"
    elif keypoints is None:
        skipped["akd"] = "skipped: anchored_jax.evaluation.keypoint_metrics is not available"
    elif landmarks not in getattr(keypoints, "EXTRACTORS", (landmarks,)):
        skipped["akd"] = (
            f"skipped: keypoint_metrics has no {landmarks!r} landmark extractor (it has "
            f"{list(keypoints.EXTRACTORS)})"
        )
    else:
        extractor = keypoints.landmark_extractor(landmarks)
        if isinstance(extractor, str):  # why it is unavailable; its first clause is the fact
            skipped["akd"] = f"skipped: {extractor.split(';')[0]} (AKD's landmark extractor)"
        else:
            suite.landmarks = extractor
    if _module("temporal_metrics") is None:
        skipped["temporal"] = "skipped: anchored_jax.evaluation.temporal_metrics is not available"
    return suite


def _uint8(frames: np.ndarray) -> np.ndarray:
    return np.clip(np.round((frames + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _fvd_windows(video_THWC: np.ndarray) -> np.ndarray:
    """Non-overlapping windows `[W, FVD_WINDOW, H, W, C]` (one window of all frames if fewer)."""
    n = min(FVD_WINDOW, len(video_THWC))
    count = len(video_THWC) // n
    return video_THWC[: count * n].reshape(count, n, *video_THWC.shape[1:])


def _features(suite: MetricSuite, video_THWC: np.ndarray) -> dict[str, np.ndarray]:
    """The network outputs of one video (real or generated) that the pooled metrics use."""
    out = {}
    if suite.inception is not None:
        out["inception"] = _batched(suite.inception, video_THWC[1:])
    if suite.i3d is not None:
        out["i3d"] = _batched(suite.i3d, _fvd_windows(video_THWC), batch=2)
    if suite.landmarks is not None:
        out["landmarks"] = np.asarray(suite.landmarks(_uint8(video_THWC[1:])), np.float64)
    if "temporal" not in suite.skipped:
        from anchored_jax.evaluation.temporal_metrics import consecutive_difference

        out["consecutive_difference"] = np.asarray(consecutive_difference(video_THWC), np.float64)
    return out


def score_clip(
    suite: MetricSuite,
    video_THWC: np.ndarray,
    real_THWC: np.ndarray,
    landmarks_TLC: np.ndarray,
    owner_T: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Everything one generated clip contributes to the report, as numpy arrays.

    owner_T: the segment that generated each frame (`segment_metrics.segment_owner_T` of the
      plan the method ran), for the seam ratio and spread; None for copy-source.
    """
    video_THWC = np.asarray(video_THWC, np.float32)
    real_THWC = np.asarray(real_THWC, np.float32)
    part = frame_metrics(video_THWC, real_THWC, landmarks_TLC)
    part.update(_frame_statistics(video_THWC, landmarks_TLC))
    if owner_T is not None:
        part["owner"] = np.asarray(owner_T, np.int64)
    part["image_size"] = np.asarray(video_THWC.shape[1])
    if suite.lpips is not None:
        part["lpips"] = _batched(
            lambda xy: suite.lpips(xy[:, 0], xy[:, 1]), np.stack([video_THWC, real_THWC], 1)
        )
    if "temporal" not in suite.skipped:
        from anchored_jax.evaluation.temporal_metrics import temporal_difference_error

        part["tde"] = np.asarray(temporal_difference_error(video_THWC, real_THWC), np.float64)
    if suite.identity is not None:
        part["identity"] = _batched(suite.identity, video_THWC[1:])
    part.update(_features(suite, video_THWC))
    return part


def _frame_statistics(video_THWC: np.ndarray, landmarks_TLC: np.ndarray) -> dict:
    """The per-frame numbers behind the seam ratio, spread, sharpness and flicker."""
    return dict(
        change=segment_metrics.frame_change_T(video_THWC),
        region_means=segment_metrics.region_means_T23(video_THWC, landmarks_TLC),
        laplacian=video_statistics.laplacian_T(video_THWC),
    )


def reference_clip(
    suite: MetricSuite, real_THWC: np.ndarray, landmarks_TLC: np.ndarray
) -> dict[str, np.ndarray]:
    """The real clip's side of the pooled metrics: features, the source's identity embedding,
    the per-frame statistics of the consistency ratios and the data's own landmarks."""
    real_THWC = np.asarray(real_THWC, np.float32)
    ref = _features(suite, real_THWC)
    ref.update(_frame_statistics(real_THWC, landmarks_TLC))
    ref["image_size"] = np.asarray(real_THWC.shape[1])
    if suite.landmarks is not None:
        ref["data_landmarks"] = np.asarray(landmarks_TLC, np.float64)[1:, :, :2]
    if suite.identity is not None:
        ref["source_identity"] = _batched(suite.identity, real_THWC[:1])[0]
    return ref


def _frechet(a_ND: np.ndarray, b_ND: np.ndarray) -> float | None:
    """The Fréchet distance of two feature sets; None with fewer than 2 vectors in one."""
    from anchored_jax.evaluation.frechet import feature_statistics, frechet_distance

    if min(len(a_ND), len(b_ND)) < 2:
        return None
    return float(frechet_distance(*feature_statistics(a_ND), *feature_statistics(b_ND)))


def _mean_after_source(parts: list[dict], key: str) -> float:
    return float(np.concatenate([p[key][1:] for p in parts]).mean())


def summarize_suite(
    parts: dict[str, list[dict[str, np.ndarray]]],
    references: list[dict[str, np.ndarray]],
    suite_skipped: dict[str, str],
    plan_owner_T: np.ndarray | None = None,
) -> dict:
    """Pools each method's clips (`parts[method][clip]`) into the report's numbers.

    plan_owner_T: the owner of each frame under the plan of the table (for the real video's
      reference seam ratio and spread, and copy-source's spread); a part's own `owner` (the
      plan its method ran) is used for its seam ratio and spread.
    Returns `{"methods": {method: row}, "per_clip": {method: [row]}, "real": row,
    "skipped": {...}}`; every row holds plain floats (or None where a number is undefined)
    and the distance curves.
    """
    summary = summarize({m: [{k: p[k] for k in FRAME_KEYS} for p in ps] for m, ps in parts.items()})
    skipped = dict(suite_skipped)
    per_clip = {}
    cat = np.concatenate
    for method, ps in parts.items():
        row = summary[method]
        per_clip[method] = [
            {k: float(p[k][1:].mean()) for k in ("psnr", "ssim", "l1", "drift")} for p in ps
        ]
        row.update(_consistency(ps, references, plan_owner_T))
        if "lpips" in ps[0]:
            row["lpips_mean"] = _mean_after_source(ps, "lpips")
        if "tde" in ps[0]:
            row["tde_mean"] = float(cat([p["tde"] for p in ps]).mean())
            row["consecutive_difference_mean"] = float(
                cat([p["consecutive_difference"] for p in ps]).mean()
            )
        for metric, key, what in (("fid", "inception", "frames"), ("fvd", "i3d", "windows")):
            if key in ps[0]:
                value = _frechet(cat([p[key] for p in ps]), cat([r[key] for r in references]))
                if value is None:
                    skipped[metric] = f"skipped: the Fréchet distance needs >= 2 {what}"
                else:
                    row[metric] = value
        if "identity" in ps[0]:
            from anchored_jax.evaluation.identity_embedding import identity_similarity

            out = cat([p["identity"] for p in ps])
            src = cat([np.repeat(r["source_identity"][None], len(p["identity"]), 0)
                       for p, r in zip(ps, references)])  # fmt: skip
            row.update({k: float(v) for k, v in identity_similarity(out, src).items()})
        if "landmarks" in ps[0]:
            row["akd"] = _akd(ps, [r["landmarks"] for r in references])
    return {
        "methods": summary,
        "per_clip": per_clip,
        "real": _real_row(references, plan_owner_T, skipped),
        "skipped": skipped,
    }


def _akd(parts: list[dict], reference_NLC: list[np.ndarray]) -> float:
    from anchored_jax.evaluation.keypoint_metrics import average_keypoint_distance

    pred_NLC = np.concatenate([p["landmarks"] for p in parts])
    size = int(parts[0]["image_size"])
    return float(average_keypoint_distance(pred_NLC, np.concatenate(reference_NLC), size))


def _consistency(parts: list[dict], references: list[dict], plan_owner_T) -> dict:
    """A method's seam ratio, spread, PSNR by distance, sharpness and flicker ratios."""
    num_frames = len(parts[0]["psnr"])
    distance = np.concatenate([p["distance"][1:] for p in parts])
    psnr = np.concatenate([p["psnr"][1:] for p in parts])
    row = {"psnr_by_distance": distance_bins.binned_means(distance, psnr)}
    quarters = [distance_bins.quarter_change(p["psnr"]) for p in parts]
    row["psnr_quarter_change"] = None if None in quarters else float(np.mean(quarters))
    owned = "owner" in parts[0]
    if owned:
        changes, owners = [p["change"] for p in parts], [p["owner"] for p in parts]
        row.update(segment_metrics.pooled_seam_ratio(changes, owners))
    else:  # copy-source: no segments, so no seams
        row.update(seam_ratio=None, join_pairs=None, within_pairs=None)
    owners = [p["owner"] if owned else plan_owner_T for p in parts]
    row.update(_mean_spread([p["region_means"] for p in parts], owners))
    row["sharpness_ratio"] = video_statistics.ratio(
        [p["laplacian"][1:] for p in parts], [r["laplacian"][1:] for r in references]
    )
    row["flicker_ratio"] = video_statistics.ratio(
        [p["change"][1:] for p in parts], [r["change"][1:] for r in references]
    )
    row["curves"] = {
        metric: distance_bins.log_binned_curve(
            distance, np.concatenate([p[metric][1:] for p in parts]), num_frames
        )
        for metric in ("psnr", "ssim", "drift")
    }
    return row


def _mean_spread(means: list[np.ndarray], owners: list) -> dict:
    """The spread between segments averaged over clips (None where a clip has < 2 segments)."""
    if any(o is None for o in owners):
        return dict(spread=None, spread_face=None, spread_background=None)
    per_clip = [segment_metrics.spread_from_means(m, o) for m, o in zip(means, owners)]
    out = {}
    for key in per_clip[0]:
        values = [c[key] for c in per_clip]
        out[key] = None if None in values else float(np.mean(values))
    return out


def _real_row(references: list[dict], plan_owner_T, skipped: dict) -> dict:
    """The real video's reference numbers: seam ratio and spread on the table's plan, the mean
    consecutive-frame difference, and the landmark extractor's floor for AKD."""
    real = {}
    if references and "consecutive_difference" in references[0]:
        real["consecutive_difference_mean"] = float(
            np.concatenate([r["consecutive_difference"] for r in references]).mean()
        )
    if plan_owner_T is not None:
        owners = [plan_owner_T] * len(references)
        real.update(segment_metrics.pooled_seam_ratio([r["change"] for r in references], owners))
        real.update(_mean_spread([r["region_means"] for r in references], owners))
    if references and "landmarks" in references[0]:
        extracted, data = references[0]["landmarks"], references[0]["data_landmarks"]
        if extracted.shape[1] != data.shape[1]:
            skipped["akd_floor"] = (
                f"skipped: the extractor gives {extracted.shape[1]} points, the data's "
                f"landmarks have {data.shape[1]}"
            )
        else:
            real["akd_floor"] = _akd(references, [r["data_landmarks"] for r in references])
    return real
