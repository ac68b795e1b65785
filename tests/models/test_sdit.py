"""SDiT forward: shapes, adaLN-Zero init, conditioning, dropout nulls, clip length, masking."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.sdit_testing import (
    make_inputs,
    new_model,
    params_of,
    perturb,
    run,
    small_config,
)


def test_forward_shape_and_finite():
    config = small_config()
    model = new_model(small_config(out_channels=6))
    out = run(model, make_inputs(config, batch=2, frames=3))
    assert out.shape == (2, 3, 8, 8, 6)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.abs(out).max() > 1e-3  # a perturbed model predicts something


def test_adaln_zero_init_gives_exactly_zero():
    config = small_config()
    model = new_model(config, perturbed=False)
    inputs = make_inputs(config)
    assert np.all(run(model, inputs) == 0.0)

    # With only the final projection made live, the output is Linear(LN(tokens)): every
    # block must still be the identity, so t, landmarks and identity cannot matter.
    perturb(model, skip=lambda path: path[:2] != ("final_layer", "linear"))
    base = run(model, inputs)
    assert np.abs(base).max() > 1e-3
    for name, value in [
        ("t_BK", 999 - inputs["t_BK"]),
        ("landmarks_BKLC", inputs["landmarks_BKLC"] * 2 + 1),
        ("identity", -inputs["identity"]),
    ]:
        np.testing.assert_array_equal(run(model, {**inputs, name: value}), base, err_msg=name)

    # ...and one live block gate makes the conditions matter, so the check above can fail.
    perturb(model, skip=lambda path: path[:2] != ("blocks", "adaln"))
    assert (
        np.abs(run(model, {**inputs, "t_BK": 999 - inputs["t_BK"]}) - run(model, inputs)).max()
        > 1e-5
    )


@pytest.mark.parametrize("attention", ["joint", "factorized"])
def test_output_depends_on_every_condition(attention):
    config = small_config(attention=attention)
    model = new_model(config)
    inputs = make_inputs(config)
    base = run(model, inputs)
    changes = {
        "x_BKHWC": inputs["x_BKHWC"][:, ::-1],
        "t_BK": 999 - inputs["t_BK"],
        "times_BK": inputs["times_BK"] + 0.5,
        "landmarks_BKLC": inputs["landmarks_BKLC"][:, :, ::-1],
        "identity": -inputs["identity"],
    }
    for name, value in changes.items():
        diff = np.abs(run(model, {**inputs, name: value}) - base).max()
        assert diff > 1e-4, f"output ignores {name} (max diff {diff})"


def test_frame_times_reach_adaln_without_token_path():
    config = small_config(time_in_tokens=False)
    model = new_model(config)
    inputs = make_inputs(config)
    diff = run(model, {**inputs, "times_BK": inputs["times_BK"] * 2}) - run(model, inputs)
    assert np.abs(diff).max() > 1e-4


@pytest.mark.parametrize("identity", ["encoder", "embedding"])
def test_dropped_conditions_use_nulls_and_ignore_values(identity):
    config = small_config(identity=identity)
    model = new_model(config)
    inputs = make_inputs(config)
    other = make_inputs(config, seed=7)
    for name, mask_name in [
        ("identity", "drop_identity_B"),
        ("landmarks_BKLC", "drop_landmarks_B"),
    ]:
        swapped = {**inputs, name: other[name]}
        # Drop only example 0: it ignores the condition, example 1 still follows it.
        drop = {mask_name: jnp.array([True, False])}
        a, b = run(model, inputs, **drop), run(model, swapped, **drop)
        np.testing.assert_allclose(a[0], b[0], atol=1e-6, err_msg=mask_name)
        assert np.abs(a[1] - b[1]).max() > 1e-4, mask_name
        # The learned null is not the same as keeping the condition.
        assert np.abs(a[0] - run(model, inputs)[0]).max() > 1e-4, mask_name
    # No masks at all (None) == neutral masks.
    np.testing.assert_allclose(run(model, inputs, fill_masks=False), run(model, inputs), atol=1e-6)


def test_any_clip_length_up_to_max_frames():
    config = small_config()
    model = new_model(config)
    for frames in (1, 2, config.max_frames):
        out = run(model, make_inputs(config, frames=frames))
        assert out.shape == (2, frames, 8, 8, 3) and np.all(np.isfinite(out))
    with pytest.raises(ValueError, match="clip has K=5 frames but model.max_frames is 4"):
        model(**make_inputs(config, frames=5))


def test_bad_input_shapes_raise_clear_errors():
    config = small_config()
    model = new_model(config, perturbed=False)
    inputs = make_inputs(config)
    with pytest.raises(ValueError, match=r"landmarks_BKLC: expected shape \(2, 3, 5, 3\)"):
        model(**{**inputs, "landmarks_BKLC": inputs["landmarks_BKLC"][:, :, :4]})
    with pytest.raises(ValueError, match="identity_BHWC"):
        model(**{**inputs, "identity": jnp.zeros((2, 12))})
    with pytest.raises(ValueError, match="model.image_size"):
        model(**{**inputs, "x_BKHWC": inputs["x_BKHWC"][:, :, :4, :4]})
    with pytest.raises(ValueError, match="frame_mask_BK"):
        model(**inputs, frame_mask_BK=jnp.ones((2, 2), bool))


@pytest.mark.parametrize("attention", ["joint", "factorized"])
def test_padded_frame_is_invisible_to_real_frames(attention):
    config = small_config(attention=attention)
    model = new_model(config)
    inputs = make_inputs(config, frames=4)
    changed = {name: value.copy() for name, value in inputs.items()}
    changed["x_BKHWC"][:, 2] = 7.0
    changed["landmarks_BKLC"][:, 2] += 3.0
    changed["times_BK"][:, 2] = 40.0
    mask = jnp.array([[True, True, False, True]] * 2)
    a, b = run(model, inputs, frame_mask_BK=mask), run(model, changed, frame_mask_BK=mask)
    np.testing.assert_allclose(a[:, [0, 1, 3]], b[:, [0, 1, 3]], atol=1e-6)
    # Unmasked, the same change does reach the other frames (so the check can fail).
    leak = np.abs(run(model, inputs)[:, 0] - run(model, changed)[:, 0]).max()
    assert leak > 1e-4


def test_factorized_frames_independent_while_temporal_projection_is_zero():
    config = small_config(attention="factorized")
    model = new_model(config, perturbed=False)
    # Everything live except the temporal branch's output projection (still zero-init).
    perturb(
        model,
        skip=lambda path: (
            path[1:3] in {("temporal_attn", "out_kernel"), ("temporal_attn", "out_bias")}
        ),
    )
    inputs = make_inputs(config, frames=3)
    changed = {name: value.copy() for name, value in inputs.items()}
    changed["x_BKHWC"][:, 1] *= -2.0
    a, b = run(model, inputs), run(model, changed)
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-6)
    assert np.abs(a[:, 1] - b[:, 1]).max() > 1e-4
    perturb(model, seed=5)  # now the temporal branch mixes frames
    assert np.abs(run(model, inputs)[:, 0] - run(model, changed)[:, 0]).max() > 1e-5


def test_bfloat16_compute_close_to_float32():
    config = small_config()
    inputs = make_inputs(config)
    ref = run(new_model(config), inputs)
    bf16 = new_model(small_config(dtype="bfloat16"))
    assert {v.dtype for v in params_of(bf16)} == {np.dtype("float32")}
    out = run(bf16, inputs)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    err = np.abs(out - ref).max() / np.abs(ref).max()
    assert err < 0.05, err


def test_identity_tokens_carry_the_source_patch_by_patch_and_drop_with_it():
    config = small_config(identity_tokens=True)
    model = new_model(config)
    inputs = make_inputs(config)
    # Change only the top-left patch of the source image: with identity tokens, the first
    # frame's top-left output patch changes more than it does through the global encoder.
    patched = {**inputs, "identity": inputs["identity"].copy()}
    patched["identity"][:, :2, :2] += 3.0
    base, moved = run(model, inputs), run(model, patched)
    assert np.abs(base - moved).max() > 1e-3
    plain = new_model(small_config())  # no identity tokens: the source reaches adaLN only
    change_plain = np.abs(run(plain, inputs) - run(plain, patched)).mean()
    assert np.abs(base - moved).mean() > 1.5 * change_plain
    # Dropping the identity also drops its tokens: the source image is then ignored.
    drop = {"drop_identity_B": jnp.array([True, True])}
    np.testing.assert_allclose(run(model, inputs, **drop), run(model, patched, **drop), atol=1e-6)
    with pytest.raises(ValueError, match="model.identity_tokens: needs model.identity"):
        small_config(identity_tokens=True, identity="embedding")


def test_landmark_tokens_tell_each_patch_where_the_landmarks_are():
    config = small_config(landmark_tokens=True)
    model = new_model(config)
    inputs = make_inputs(config)
    inputs["landmarks_BKLC"] = np.clip(inputs["landmarks_BKLC"] * 0.2 + 0.5, 0, 1)
    moved = {**inputs, "landmarks_BKLC": inputs["landmarks_BKLC"].copy()}
    moved["landmarks_BKLC"][:, :, 0, :2] += 0.25  # one point of every frame moves
    plain = new_model(small_config())
    change = np.abs(run(model, inputs) - run(model, moved)).mean()
    change_plain = np.abs(run(plain, inputs) - run(plain, moved)).mean()
    assert change > 1.5 * change_plain  # the map adds a spatial path to the MLP's global one
    drop = {"drop_landmarks_B": jnp.array([True, True])}
    np.testing.assert_allclose(run(model, inputs, **drop), run(model, moved, **drop), atol=1e-6)
    with pytest.raises(ValueError, match="model.landmark_tokens: needs"):
        small_config(landmark_tokens=True, landmark_condition=False)
