"""The optimiser: AdamW with linear warm-up and cosine decay, global-norm clipping.

DiT trains with AdamW and no weight decay; warm-up and cosine decay are our defaults for the
short, high-learning-rate runs that the small configs do.
"""

import ml_collections
import optax


def learning_rate_schedule(training: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warm-up to the peak, then cosine decay to `end_learning_rate_factor` of it."""
    peak = training.learning_rate
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=max(1, training.warmup_steps),
        decay_steps=max(training.num_steps, training.warmup_steps + 1),
        end_value=peak * training.end_learning_rate_factor,
    )


def make_optimizer(training: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(training.grad_clip_norm),
        optax.adamw(
            learning_rate_schedule(training),
            b1=training.b1,
            b2=training.b2,
            weight_decay=training.weight_decay,
        ),
    )
