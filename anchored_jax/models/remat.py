"""Named rematerialisation policies: the config picks one by string, the model applies it.

The scanned block body (and each block of the unscanned loop) is wrapped in
`jax.checkpoint` with the chosen policy, so memory/compute trade-offs are a config
change. The block tags its attention output with `checkpoint_name("attention_out")`,
which is what `save_attention_out` keeps.
"""

from collections.abc import Callable

import jax

ATTENTION_OUT = "attention_out"

# name -> policy; None means "do not remat at all" (everything saved, plain autodiff).
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_attention_out": jax.checkpoint_policies.save_only_these_names(ATTENTION_OUT),
    # Saves the attention outputs in host memory instead of recomputing them: HBM for
    # PCIe/DMA bandwidth, for the largest models on GPU/TPU.
    "offload_attention_out": jax.checkpoint_policies.save_and_offload_only_these_names(
        names_which_can_be_saved=[],
        names_which_can_be_offloaded=[ATTENTION_OUT],
        offload_src="device",
        offload_dst="pinned_host",
    ),
}


def check_remat_policy(name: str) -> None:
    """Raises a one-line ValueError naming the config field when `name` is unknown."""
    if name not in REMAT_POLICIES:
        raise ValueError(
            f"model.remat_policy: expected one of {list(REMAT_POLICIES)}, got {name!r}"
        )


def apply_remat(fn: Callable, name: str, *, prevent_cse: bool = True) -> Callable:
    """Returns `fn` wrapped in `jax.checkpoint` with the named policy ("none": `fn` itself).

    Inside `lax.scan` pass `prevent_cse=False`: scan already stops the CSE that would
    undo the remat, and the extra barriers only cost speed (jax.checkpoint docs).
    """
    check_remat_policy(name)
    if name == "none":
        return fn
    return jax.checkpoint(fn, policy=REMAT_POLICIES[name], prevent_cse=prevent_cse)
