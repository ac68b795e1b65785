r"""sDiT training on non-uniformly spaced clips: the main Anchored Diffusion config.

Train the tiny variant on the embedded synthetic faces (about 10 minutes on 2 CPU cores):

  python -m launch.train --config configs/sdit.py:tiny --workdir runs/sdit_tiny

Any knob can be overridden from the command line, e.g.

  python -m launch.train --config configs/sdit.py:S --workdir runs/sdit_s \
      --config.model.attention=factorized --config.data.sampler=loguniform_gaps

The argument after the colon picks a variant, big_vision style: `size=tiny,recipe=x0_cosine`.

- size: tiny | S | B | L | XL: DiT's widths, depths and heads, and what goes with a size: the
  space (tiny: 32px pixels of the synthetic faces; S/B/L/XL: 32x32x4 VAE latents of 256px
  frames) and the compute budget (batch, steps, learning rate, save and eval intervals).
- recipe: x0_cosine | eps_linear: the diffusion objective and the choices tuned with it.
  x0_cosine (tiny's default) is x0-prediction on a cosine schedule, sampled in 5 steps;
  eps_linear (the default of the other sizes) is DiT's epsilon on a linear schedule.

A bare size (`configs/sdit.py:tiny`, `:S`) is `size=<it>` with that size's default recipe.
S/B/L/XL read a latent cache written once (docs/interop.md, "Training in latent space"):

  python -m launch.cache_latents --vae /models/sd-vae-ft-mse --data.source=video_dir \
      --data.root=/data/vox256 --out /data/vox256_latents
  python -m launch.train --config configs/sdit.py:S --workdir runs/sdit_s \
      --config.data.root=/data/vox256_latents --config.data.vae=/models/sd-vae-ft-mse
"""

import ml_collections

# DiT sizes (width, depth, heads), from the DiT paper, Table 1.
_SIZES = {
    "tiny": (128, 4, 4),
    "S": (384, 12, 6),
    "B": (768, 12, 12),
    "L": (1024, 24, 16),
    "XL": (1152, 28, 16),
}

# What a size brings besides its width: the space it denoises and its compute budget.
_PIXELS_ON_CPU = dict(
    source="synthetic", image_size=32, clip_frames=4, downsample=1, in_channels=3,
    patch_size=4, time_embed_period=100.0, batch_size=8, num_steps=1000, learning_rate=1e-3,
    warmup_steps=100, ema_decay=0.995, every_steps=500, eval_every_steps=250,
    sample_every_steps=1000,
)  # fmt: skip
_LATENTS_ON_PODS = dict(
    source="latents", image_size=256, clip_frames=8, downsample=8, in_channels=4,
    patch_size=2, time_embed_period=600.0, batch_size=256, num_steps=400_000,
    learning_rate=1e-4, warmup_steps=5000, ema_decay=0.9999, every_steps=5000,
    eval_every_steps=5000, sample_every_steps=20000,
)  # fmt: skip

# Diffusion recipes: the objective and the choices that were tuned with it.
_RECIPES = {
    # tiny's: x0-prediction is sharpest in few steps; reenactment-style clips (source = the
    # clip's first frame, mostly known anchors) and landmark maps in the tokens
    "x0_cosine": dict(
        schedule="cosine",
        prediction="x0",
        sample_steps=5,
        identity_frame="first",
        known_anchor_prob=0.9,
        landmark_tokens=True,
    ),  # fmt: skip
    # DiT's: epsilon on the linear schedule; any frame as the source, half generated anchors
    "eps_linear": dict(
        schedule="linear",
        prediction="epsilon",
        sample_steps=20,
        identity_frame="random",
        known_anchor_prob=0.5,
        landmark_tokens=False,
    ),  # fmt: skip
}


def _parse(arg: str) -> tuple[str, str]:
    """`tiny` | `size=tiny` | `size=S,recipe=x0_cosine` -> (size, recipe)."""
    fields = {}
    for part in filter(None, (arg or "tiny").split(",")):
        key, eq, value = part.partition("=")
        if not eq:
            key, value = "size", part  # a bare size
        if key not in ("size", "recipe") or key in fields:
            raise ValueError(
                f"config argument: expected size=SIZE[,recipe=RECIPE] or a bare size, got {arg!r}"
            )
        fields[key] = value
    size = fields.get("size", "tiny")
    if size not in _SIZES:
        raise ValueError(f"config argument size: expected one of {list(_SIZES)}, got {size!r}")
    recipe = fields.get("recipe", "x0_cosine" if size == "tiny" else "eps_linear")
    if recipe not in _RECIPES:
        raise ValueError(
            f"config argument recipe: expected one of {list(_RECIPES)}, got {recipe!r}"
        )
    return size, recipe


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    size, recipe = _parse(arg)
    width, depth, heads = _SIZES[size]
    space = _PIXELS_ON_CPU if size == "tiny" else _LATENTS_ON_PODS
    r = _RECIPES[recipe]

    config = ml_collections.ConfigDict()
    config.task = "sdit"  # picks launch/train_sdit.py
    config.seed = 0  # model init, noise and condition-dropout randomness (data has its own seed)

    # --- data: clips of K frames at random, non-uniform times -------------------------------
    config.data = data = ml_collections.ConfigDict()
    # synthetic (embedded procedural faces) | video_dir | frame_dir | tfds:NAME
    # (e.g. tfds:face_videos/s256), see docs/real_data.md | latents (a latent cache)
    data.source = space["source"]
    # folder with train/ and test/ (video_dir, frame_dir); TFDS data_dir (tfds:); the cache
    # folder (latents; no default: give --config.data.root)
    data.root = ""
    data.verify_files = False  # decode every frame at start: slow, but bad files skipped up front
    data.vae = ""  # latents: diffusers VAE folder to decode sample grids; "" = no grids
    # frame side in pixels (latents: of the frames the cache was encoded from); larger =
    # sharper, slower
    data.image_size = space["image_size"]
    data.clip_frames = space["clip_frames"]  # K frames per clip; more = longer context, cost ~K^2
    data.fps = 25.0  # frame rate of the source videos; frame times are in seconds
    # frames per synthetic video, rendered on the fly: long enough that training sees every
    # anchor-to-frame gap a 1024-frame anchored video asks for, at its true time
    data.video_frames = 1024
    data.num_train_identities = 64  # synthetic training identities (disjoint from test)
    data.num_test_identities = 8  # held-out identities for the eval loss and samples
    data.videos_per_identity = 4  # synthetic videos per identity
    # uniform_stride (baseline) | random_subset | loguniform_gaps (as many short gaps as long
    # ones per octave: the contiguous and the whole-video random plans are both in range)
    data.sampler = "loguniform_gaps"
    data.min_window = 4  # shortest clip window, frames; short = dense, near-duplicate frames
    # longest clip window, frames, capped by each video's length (so: the whole video); long =
    # sparse frames, more motion
    data.max_window = 100_000
    # slot 0 (the anchor) is drawn from anywhere in the video (before, inside or after the
    # other frames) | first (the clip's first frame): anywhere teaches copying from an anchor
    # at any distance, which is what an anchored long video needs
    data.anchor_position = "anywhere"
    # source image: random (any frame of the video) | first (the clip's first frame, which is
    # what reenactment gives: the source is the known anchor)
    data.identity_frame = r["identity_frame"]
    data.seed = 0  # seed of the synthetic world and of the data order
    data.worker_count = 0  # grain worker processes; 0 = in-process (best on 2 cores)

    # --- model: the sequence-DiT -------------------------------------------------------------
    config.model = model = ml_collections.ConfigDict()
    # side of what the model sees: the frames (pixels), or frames / 8 (the SD VAE's latents)
    model.image_size = data.get_ref("image_size") // space["downsample"]
    model.in_channels = space["in_channels"]  # 3 = pixels, 4 = VAE latents
    model.out_channels = 0  # 0 = same as input
    model.patch_size = space["patch_size"]  # smaller = more tokens, better detail, cost ~1/p^4
    model.width = width
    model.depth = depth
    model.num_heads = heads
    model.mlp_ratio = 4.0
    model.max_frames = 16  # longest clip the model accepts at run time; no frame-index table
    model.attention = "joint"  # joint (all K*N tokens) | factorized (spatial, then temporal)
    model.attention_backend = "xla"  # xla (reference) | cudnn (GPU, bf16) | splash (TPU Pallas)
    model.time_in_tokens = True  # also add the frame-time embedding to each frame's tokens
    model.num_landmarks = 68  # landmark points per frame (68 synthetic, 468 MediaPipe)
    model.landmark_dim = 3  # coordinates per landmark point
    # encoder (learned, over the source image) | embedding (external vector, e.g. CLIP) |
    # class_label (DiT's label table: the one-frame DiT-parity path, see docs/interop.md)
    model.identity = "encoder"
    model.num_classes = 1000  # label-table size for identity=class_label (DiT: 1000 + null)
    model.frame_time_condition = True  # frame-time guidance; off only for the DiT-parity path
    model.landmark_condition = True  # landmark conditioning; off only for the DiT-parity path
    model.identity_channels = (64, 128, 256)  # conv widths of the learned identity encoder
    # add the source image's patches to every frame's tokens: raises single-segment PSNR but
    # makes the shared anchor redundant (an ablation, docs/anchored_inference.md); off = the
    # paper's global identity vector, so appearance detail comes from the anchor by attention
    model.identity_tokens = False
    # add each frame's rasterised landmark map to its tokens (motion where it happens)
    model.landmark_tokens = r["landmark_tokens"]
    model.identity_embed_dim = 768  # size of an external identity embedding (embedding mode)
    # seconds; longest period of the frame-time sinusoids; must exceed twice the longest
    # anchor gap (tiny: 1024 frames at 25 fps = 41 s either side of the anchor)
    model.time_embed_period = space["time_embed_period"]
    model.scan_layers = True  # scan the blocks: one compiled block, faster compile at depth
    model.remat_policy = "none"  # none | full | dots | dots_no_batch | save_attention_out |
    # offload_attention_out (to host memory); more remat = less memory, more recompute
    model.dtype = "float32"  # compute dtype; bfloat16 on accelerators
    model.param_dtype = "float32"  # parameter dtype; keep float32 for stable AdamW updates

    # --- diffusion ---------------------------------------------------------------------------
    config.diffusion = diffusion = ml_collections.ConfigDict()
    # linear (DDPM/DiT) | cosine (better at low resolution)
    diffusion.schedule = r["schedule"]
    diffusion.num_timesteps = 1000
    # epsilon (DiT) | v | x0 (tiny: best PSNR in few steps, docs/anchored_inference.md)
    diffusion.prediction = r["prediction"]

    # --- sampling: how launchers generate videos from this run (SamplerSettings.from_config) --
    # Every field can be overridden per call by the launcher's flag of the same meaning.
    config.sampling = sampling = ml_collections.ConfigDict()
    # anchored (one shared anchor) | independent (baseline: segments share nothing) |
    # autoregressive (baseline: segment s conditioned on s-1's last frame; sequential, slower)
    sampling.method = "anchored"
    # known (the source image is the anchor: reenactment) | generated (the model makes it)
    sampling.anchor = "known"
    # known anchor: clean (fed at t=0, as training shows it) | renoise (noised to each step's t)
    sampling.known_anchor_mode = "clean"
    # generated anchor: settled (made first from 16 segments, then held clean: sharper, ~+16
    # segments of cost) | averaged (denoised with every segment, averaged after each step)
    sampling.generated_anchor_mode = "settled"
    # contiguous (segments in time order) | strided (each spans the video) | random
    # (non-uniform, like training clips); see anchored_jax/sampling/segment_plan.py
    sampling.plan = "contiguous"
    sampling.sampler = "ddim"  # ddim (deterministic at eta=0) | ddpm (ancestral, needs more steps)
    # solver steps, each one batched forward per guidance branch; tiny x0-prediction: 5 steps
    # with landmark guidance are as sharp as 20 without (docs/anchored_inference.md)
    sampling.num_steps = r["sample_steps"]
    sampling.eta = 0.0  # DDIM noise; 0 = deterministic, > 0 = more varied, needs more steps
    # classifier-free guidance scales (1 = off; each scale != 1 adds a model branch):
    sampling.identity_scale = 1.0  # > 1 pushes appearance towards the source
    sampling.landmark_scale = 1.75  # > 1 sharpens motion; costs ~0.3 dB PSNR at 1.75 (tiny)
    sampling.chunk_size = 32  # segments per model call per device: bounds memory, not length
    # clip x0 estimates to [-1, 1]: right for pixels, wrong for SD latents (not bounded by 1)
    sampling.clip_x0 = space["in_channels"] == 3
    # seconds; > 0 moves segments further than this from their anchor closer (with a warning);
    # 0 = true times; -1 = auto: the run's training window (the whole training video here)
    sampling.max_anchor_gap_s = -1.0
    # starting noise shared between frames, in [0, 1): less flicker, 0.97 costs the tiny model
    # 0.1 dB PSNR and cuts its flicker ratio from 3.2 to 1.1; 0 = independent, as in training
    sampling.noise_correlation = 0.97

    # --- training ----------------------------------------------------------------------------
    config.training = training = ml_collections.ConfigDict()
    training.batch_size = space["batch_size"]  # global batch, split over data-parallel devices
    training.num_steps = space["num_steps"]
    training.learning_rate = space["learning_rate"]  # peak AdamW learning rate
    training.warmup_steps = space["warmup_steps"]  # linear warm-up before cosine decay
    training.end_learning_rate_factor = 0.1  # cosine decays to this fraction of the peak
    training.weight_decay = 0.0  # AdamW decoupled weight decay; DiT trains with none
    training.b1 = 0.9
    training.b2 = 0.999
    training.grad_clip_norm = 1.0  # global-norm clipping; guards against loss spikes
    training.max_nonfinite_steps = 20  # stop after this many consecutive skipped (NaN/inf) steps
    training.ema_decay = space["ema_decay"]  # EMA of params used for eval and sampling
    training.identity_drop_prob = 0.1  # identity replaced by its learned null (enables CFG)
    training.landmark_drop_prob = 0.1  # landmarks replaced by their learned null (enables CFG)
    # clips whose first frame is clean (t=0) and known, as in reenactment; the rest learn a
    # generated anchor
    training.known_anchor_prob = r["known_anchor_prob"]
    training.timesteps = "shared"  # shared (one t per clip) | per_frame (independent t per frame)

    # --- parallelism: mesh axes and logical-axis rules ----------------------------------------
    config.mesh = mesh = ml_collections.ConfigDict()
    # Devices per axis within a slice; one axis may be -1 (the rest of the devices).
    # data: plain data parallel; fsdp: data parallel with params/optimiser sharded (saves
    # memory, costs all-gathers); tensor: heads/MLP split (for widths that do not fit);
    # sequence: the token axis split (for very long K*N).
    mesh.num_devices = -1  # devices to use: -1 = all, or the first N
    mesh.ici = dict(data=-1, fsdp=1, tensor=1, sequence=1)
    mesh.dcn = dict(data=1, fsdp=1, tensor=1, sequence=1)  # slices per axis on multi-slice pods
    config.sharding = ml_collections.ConfigDict()
    # [logical axis, mesh axis | [mesh axes] | None]; a dimension the axes don't divide is
    # replicated. See anchored_jax/parallel/logical_sharding.py.
    # Parameters sharded over fsdp along their embedding axis and over tensor along heads and
    # MLP columns (Megatron-style); the batch over data and fsdp (the pattern of MaxText).
    config.sharding.rules = [
        ["batch", ["data", "fsdp"]],
        ["length", "sequence"],
        ["act_embed", None],
        ["layers", None],
        ["embed", "fsdp"],
        ["mlp", "tensor"],
        ["heads", "tensor"],
        ["head_dim", None],
        ["qkv", None],
        ["adaln", "tensor"],
        ["patch", None],
        ["cond_in", None],
        ["kernel_h", None],
        ["kernel_w", None],
        ["conv_in", None],
        ["conv_out", "tensor"],
    ]

    # --- checkpoints -------------------------------------------------------------------------
    config.checkpoint = ckpt = ml_collections.ConfigDict()
    ckpt.every_steps = space["every_steps"]  # also saved at the last step and on preemption
    ckpt.max_to_keep = 3  # most recent checkpoints kept on disk
    ckpt.async_save = True  # write in the background while training continues

    # --- logging and evaluation --------------------------------------------------------------
    config.logging = logging = ml_collections.ConfigDict()
    logging.log_every_steps = 50  # train loss and learning rate to TensorBoard
    logging.eval_every_steps = space["eval_every_steps"]  # held-out denoising loss
    logging.eval_batches = 4  # fixed held-out batches, the same at every evaluation
    logging.sample_every_steps = space["sample_every_steps"]  # sample grid written to the workdir
    logging.sample_clips = 4  # held-out clips in the sample grid
    logging.sample_steps = 25  # DDIM steps for the sample grid
    return config
