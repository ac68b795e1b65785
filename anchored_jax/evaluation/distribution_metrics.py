"""FID and FVD from features: the Fréchet distance between two feature distributions.

FID compares Inception-v3 pool3 features (`inception_v3.load_inception`) of real and generated
frames; FVD compares I3D logits (`i3d.load_i3d`) of real and generated clips. Both are the same
computation on different features, so both call `frechet.frechet_distance` on the statistics
of the two sets. The value depends on the number of samples (it is biased upwards for small
sets), so report it together with the sample counts.
"""

from anchored_jax.evaluation.frechet import feature_statistics, frechet_distance


def _frechet_of_features(name: str, feats_a, feats_b) -> float:
    try:
        stats_a = feature_statistics(feats_a)
        stats_b = feature_statistics(feats_b)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from e
    if stats_a[0].shape != stats_b[0].shape:
        raise ValueError(
            f"{name}: the two feature sets differ in width ({stats_a[0].shape[0]} vs "
            f"{stats_b[0].shape[0]})"
        )
    return frechet_distance(*stats_a, *stats_b)


def fid(feats_a, feats_b) -> float:
    """FID from two sets of Inception pool3 features, [N, 2048] and [M, 2048]."""
    return _frechet_of_features("fid", feats_a, feats_b)


def fvd(feats_a, feats_b) -> float:
    """FVD from two sets of I3D features, [N, 400] and [M, 400]."""
    return _frechet_of_features("fvd", feats_a, feats_b)
