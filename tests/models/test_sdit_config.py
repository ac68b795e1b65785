"""SDiTConfig validation: every bad value fails with one line naming the field."""

import pytest

from anchored_jax.models.sdit_config import SDIT_SIZES, SDiTConfig, sdit_size


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_heads": 5}, "model.num_heads: 5 does not divide model.width 128"),
        ({"patch_size": 3}, "model.patch_size: 3 does not divide model.image_size 32"),
        ({"attention": "x"}, "model.attention: expected one of ['joint', 'factorized'], got 'x'"),
        ({"attention_backend": "flash3"}, "model.attention_backend: expected one of"),
        ({"attention_backend": "cudnn"}, "model.attention_backend: 'cudnn' needs model.dtype"),
        (
            {"identity": "clip"},
            "model.identity: expected one of ['encoder', 'embedding', 'class_label']",
        ),
        ({"remat_policy": "some"}, "model.remat_policy: expected one of"),
        ({"dtype": "float16"}, "model.dtype: expected one of ['float32', 'bfloat16']"),
        ({"depth": 0}, "model.depth: expected a positive int, got 0"),
        ({"width": 130, "num_heads": 1}, "model.width: 130 must be a multiple of 4"),
        ({"out_channels": -1}, "model.out_channels"),
        ({"time_embed_period": 0.0}, "model.time_embed_period"),
        ({"identity_channels": ()}, "model.identity_channels"),
    ],
)
def test_bad_values_raise_one_line_naming_the_field(overrides, message):
    with pytest.raises(ValueError) as info:
        SDiTConfig(**overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_sizes_and_derived_fields():
    assert sdit_size("XL") == {"width": 1152, "depth": 28, "num_heads": 16}
    assert set(SDIT_SIZES) == {"tiny", "S", "B", "L", "XL"}
    with pytest.raises(ValueError, match="model.size: expected one of"):
        sdit_size("XXL")
    config = SDiTConfig(**sdit_size("B"), in_channels=4, image_size=32, patch_size=2)
    assert (config.num_patches, config.head_dim, config.output_channels) == (256, 64, 4)
    assert SDiTConfig(out_channels=8).output_channels == 8
    # Lists (as ml_collections hands them over) become tuples; the config stays hashable.
    assert hash(SDiTConfig(identity_channels=[8, 16])) == hash(
        SDiTConfig(identity_channels=(8, 16))
    )
