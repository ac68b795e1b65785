r"""LEO phase 2: the Latent Motion Diffusion Model over sequences of 20-d motion codes.

It learns the trained animator's own motion codes (LEO's phase 2): train the animator first,
then the LMDM; the codes are extracted with the animator's encoder once and cached under
`<animator run>/motion_codes/`, keyed by the encoder's parameter digest:

  python -m launch.train --config configs/animator.py:tiny --workdir runs/animator_tiny
  python -m launch.train --config configs/lmdm.py:tiny --workdir runs/lmdm_tiny

Without an animator (tests, plumbing checks), `--config.data.code_source=landmarks` uses a
seeded projection of the synthetic faces' landmark tracks as stand-in codes.

Variants: tiny (CPU) | base (LEO-sized sequences: L = 64, wider transformer).
LEO's 1-D temporal U-Net instead of the transformer: --config.model.architecture=unet.
"""

import ml_collections

# (sequence length L, width, depth, heads, batch size, steps, U-Net channels per level)
_VARIANTS = {
    "tiny": (16, 96, 3, 4, 32, 6000, (32, 64)),
    "base": (64, 512, 8, 8, 128, 200_000, (128, 256, 512)),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    variant = arg or "tiny"
    if variant not in _VARIANTS:
        raise ValueError(f"config argument: expected one of {sorted(_VARIANTS)}, got {variant!r}")
    length, width, depth, heads, batch_size, num_steps, unet_channels = _VARIANTS[variant]
    tiny = variant == "tiny"

    config = ml_collections.ConfigDict()
    config.task = "lmdm"  # picks launch/train_lmdm.py
    config.seed = 0  # model init and diffusion noise (data has its own seed)

    # --- data: motion-code sequences of videos, served as windows of L codes ----------------
    config.data = data = ml_collections.ConfigDict()
    data.source = "synthetic"  # any source of data_pipelines.pipeline.make_source
    data.image_size = 64  # frame side for the animator's encoder (unused by landmark codes)
    data.fps = 25.0  # frame rate of the source videos
    # Frames per synthetic video. Long videos (1024 = the long generations asked for) give
    # the anchored windows every gap inference uses, and real 1024-frame drift statistics.
    data.video_frames = 1024
    data.num_train_identities = 64  # synthetic training identities
    # Held-out identities for the motion statistics. Speed varies from video to video (|delta
    # alpha| per video 0.18-0.54 on the tiny animator's codes), so 8 videos measure a relative
    # error to about +-10% (90% interval) and 32 to about +-6%.
    data.num_test_identities = 32
    data.videos_per_identity = 1  # synthetic videos per identity (64 x 1024 codes to extract)
    data.seed = 0  # seed of the synthetic world and of the window order
    data.worker_count = 0  # unused: windows are served from memory
    # animator: the trained animator's encoder (LEO) | landmarks: a seeded projection of the
    # synthetic landmark tracks, a stand-in for tests when no animator exists.
    data.code_source = "animator"
    data.animator_workdir = "runs/animator_tiny"  # code_source=animator: the animator run
    data.code_cache_dir = ""  # animator codes cache; "" = <animator_workdir>/motion_codes
    data.code_scale = 25.0  # landmark codes: scale of the projection (offsets std ~0.7)
    data.code_file = ""  # optional fixed .npz for the train codes (not keyed); "" = digest cache
    # Gap from the conditioning code to a training window: log_uniform (1..video length, so
    # the anchored LMDM sees every gap it is asked for) | consecutive (LEO's windows only) |
    # mixed (half consecutive, half log-uniform). mixed, on the tiny animator's codes: first-
    # frame samples' |delta alpha| std +9% of real vs +31% for log_uniform (docs/leo.md).
    data.window_gaps = "mixed"

    # --- model: denoiser of offsets m = alpha - alpha_1 (LMC) -------------------------------
    config.model = model = ml_collections.ConfigDict()
    model.motion_dim = 20  # magnitudes per code; must equal the animator's motion_dim
    model.length = length  # L codes per sequence, alpha_1 included
    # transformer (attention at every step, the tested default) | unet (LEO's paper: convs over
    # time, attention only at the lowest resolution; L must be a multiple of 2**(levels-1)).
    model.architecture = "transformer"
    model.width = width  # token width (unet: timestep-embedding width)
    model.depth = depth  # transformer blocks (unused by unet)
    model.num_heads = heads  # temporal attention heads (unet: must divide unet_channels[-1])
    model.mlp_ratio = 4.0  # MLP hidden width / width (unused by unet)
    model.unet_channels = unet_channels  # unet: channels per level (multiples of 8), L halved
    # Windows carry their gap after the conditioning code (needed by the anchored LMDM, whose
    # windows lie anywhere after alpha_1); False: every window reads as right after alpha_1.
    model.frame_times = True
    model.time_period = 20.0  # longest period of the log(gap) sinusoid; gaps < e^10 unique

    # --- diffusion ---------------------------------------------------------------------------
    config.diffusion = diffusion = ml_collections.ConfigDict()
    diffusion.schedule = "cosine"  # linear | cosine
    diffusion.num_timesteps = 1000  # training timesteps
    # epsilon | v | x0. Tiny runs: x0 matches the data's step sizes after 6000 steps and its
    # chains stay bounded; v's chains drift; epsilon blows up (x0 = (x_t - s eps) / a, a ~ 0).
    diffusion.prediction = "x0"
    # Timestep weights of the loss, in x0 space: uniform (1; in the prediction's own space) |
    # min_snr (min(SNR, gamma), Hang et al. 2023) | min_snr_plus_one (min(SNR + 1, gamma)).
    # Tiny, on the tiny animator's codes, 32 validation videos: uniform moves 13% too slowly
    # (it under-weights the low-noise steps that set the speed), min_snr drifts 5-14% too
    # little (it weights the noisy steps that set the drift ~0); min_snr_plus_one, gamma 10,
    # is within 5% on both (docs/leo.md).
    diffusion.loss_weighting = "min_snr_plus_one"
    diffusion.min_snr_gamma = 10.0  # the cap gamma of the min_snr weightings
    diffusion.condition_dropout = 0.1  # fraction of examples trained with the null alpha_1
    diffusion.sample_steps = 50  # DDIM steps at sampling time
    # Classifier-free guidance at sampling: null + scale * (conditional - null). Below 1 the
    # null code's prediction pulls long-gap windows in: see docs/leo.md for the measured trade.
    diffusion.guidance_scale = 1.0

    # --- training ----------------------------------------------------------------------------
    config.training = training = ml_collections.ConfigDict()
    training.batch_size = batch_size  # windows per step (global)
    training.num_steps = num_steps  # optimiser steps
    training.learning_rate = 1e-3 if tiny else 2e-4  # peak AdamW learning rate
    training.warmup_steps = 100 if tiny else 5000  # linear warm-up steps
    training.end_learning_rate_factor = 0.05  # cosine decay ends at this fraction of the peak
    training.weight_decay = 0.0  # AdamW decoupled weight decay
    training.b1 = 0.9  # Adam beta1
    training.b2 = 0.999  # Adam beta2
    training.grad_clip_norm = 1.0  # global-norm gradient clipping
    training.ema_decay = 0.999 if tiny else 0.9999  # EMA of the parameters, used for sampling

    # --- checkpoints -------------------------------------------------------------------------
    config.checkpoint = ckpt = ml_collections.ConfigDict()
    ckpt.every_steps = 500 if tiny else 10_000  # also saved at the last step and on preemption
    ckpt.max_to_keep = 3  # checkpoints kept on disk
    ckpt.async_save = True  # write checkpoints in the background

    # --- logging and evaluation --------------------------------------------------------------
    config.logging = logging = ml_collections.ConfigDict()
    logging.log_every_steps = 100  # steps between train-loss scalars
    # Held-out windows compared by delta statistics at the end (first-frame samples). Windows'
    # speeds vary: 64 give a 90% interval of about +-9% on the relative error, 512 about +-3%.
    logging.eval_sequences = 512
    logging.chain_frames = 1024  # frames of the chained generation reported at the end
    logging.chain_sequences = 4  # chained sequences (first codes from held-out videos)
    return config
