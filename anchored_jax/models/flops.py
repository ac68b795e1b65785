"""Analytic matmul FLOPs of an sDiT forward/backward pass, for throughput (MFU) reports.

Counts 2*m*n*k per matmul, attention QK^T and AV included; elementwise work (norms,
softmax, activations) is left out, as is usual for MFU. Training = 3x forward
(backward is about two forward passes of matmuls).
"""

from anchored_jax.models.embeddings import FRAME_TIME_FREQ_DIM, TIMESTEP_FREQ_DIM
from anchored_jax.models.sdit_config import SDiTConfig


def _mm(m: int, n: int, k: int) -> float:
    return 2.0 * m * n * k


def _identity_flops(config: SDiTConfig) -> float:
    D = config.width
    if config.identity == "class_label":  # a table lookup, no matmul
        return 0.0
    if config.identity == "embedding":
        return _mm(1, D, config.identity_embed_dim)
    chans = (config.in_channels,) + tuple(config.identity_channels)
    size, flops = config.image_size, 0.0
    for i, (c_in, c_out) in enumerate(zip(chans[:-1], chans[1:])):
        if i > 0:  # every conv after the stem has stride 2 (SAME padding)
            size = -(-size // 2)
        flops += _mm(size * size, c_out, 9 * c_in)
    return flops + _mm(1, D, chans[-1])


def sdit_forward_flops_per_example(config: SDiTConfig, num_frames: int) -> float:
    """Matmul FLOPs of one forward pass over one clip of `num_frames` frames."""
    K, N, D = num_frames, config.num_patches, config.width
    T = K * N  # tokens in the clip
    p2 = config.patch_size**2
    cond_mlp = lambda f_in: _mm(K, D, f_in) + _mm(K, D, D)  # noqa: E731
    landmark_in = config.num_landmarks * config.landmark_dim + config.landmark_dim + 1

    flops = _mm(T, D, p2 * config.in_channels)  # patch embedding
    flops += cond_mlp(TIMESTEP_FREQ_DIM)
    if config.frame_time_condition:
        flops += cond_mlp(FRAME_TIME_FREQ_DIM)
    if config.landmark_condition:
        flops += cond_mlp(landmark_in)
    flops += _identity_flops(config)
    if config.identity_tokens:  # the source image's patch embedding
        flops += _mm(N, D, p2 * config.in_channels)
    if config.landmark_tokens:  # landmark maps (a K*L outer product each), then patches
        S = config.image_size
        flops += 2.0 * K * config.num_landmarks * S * S + _mm(T, D, p2)

    def attention(num_seqs: int, seq_len: int) -> float:
        tokens = num_seqs * seq_len
        projections = _mm(tokens, 3 * D, D) + _mm(tokens, D, D)
        scores_and_mix = 2 * num_seqs * _mm(seq_len, seq_len, D)  # QK^T and AV, all heads
        return projections + scores_and_mix

    if config.attention == "joint":
        attn = attention(1, T)
    else:
        attn = attention(K, N) + attention(N, K)
    block = attn + 2 * _mm(T, config.mlp_hidden, D) + _mm(K, 6 * D, D)  # adaLN is per frame
    flops += config.depth * block
    flops += _mm(K, 2 * D, D) + _mm(T, p2 * config.output_channels, D)  # final layer
    return flops


def sdit_train_flops_per_example(config: SDiTConfig, num_frames: int) -> float:
    """Forward + backward matmul FLOPs for one training clip (3x forward)."""
    return 3.0 * sdit_forward_flops_per_example(config, num_frames)
