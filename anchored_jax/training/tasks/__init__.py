"""The models the training loop (anchored_jax/training/loop.py) can train, one file each."""
