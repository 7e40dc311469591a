"""Layers of spt_tf.models: norms, blocks, the deformable skip (tiny shapes, CPU)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from spt_tf import geometry
from spt_tf.models import layers

RNG = np.random.default_rng(0)


def _identity(k=geometry.NUM_PARTS, batch=1):
    t = np.zeros((batch, k, 8), np.float32)
    t[..., 0] = 1.0
    t[..., 4] = 1.0
    return t


def _translation(dx, dy, k=geometry.NUM_PARTS, batch=1):
    t = _identity(k, batch)
    t[..., 2] = dx
    t[..., 5] = dy
    return t


def _shift_reference(x, dx, dy):
    """out[y, x] = in[y + dy, x + dx], zero outside (integer dx, dy)."""
    out = np.zeros_like(x)
    _, h, w, _ = x.shape
    for y in range(h):
        for xx in range(w):
            sy, sx = y + dy, xx + dx
            if 0 <= sy < h and 0 <= sx < w:
                out[:, y, xx] = x[:, sy, sx]
    return out


# ---------------------------------------------------------------- norms


def test_instance_norm_is_per_channel_and_sample():
    x = RNG.normal(2.0, 3.0, (2, 5, 4, 3)).astype(np.float32)
    norm = layers.make_norm("instance")
    y = norm(x).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-4)


def test_instance_single_uses_one_statistic_per_sample():
    x = RNG.normal(2.0, 3.0, (2, 5, 4, 3)).astype(np.float32)
    norm = layers.make_norm("instance_single")
    y = norm(x).numpy()
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = x.var(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-4)
    assert [tuple(w.shape) for w in norm.weights] == [(1,), (1,)]  # scalar gamma, beta
    norm.gamma.assign([2.0])
    norm.beta.assign([0.5])
    np.testing.assert_allclose(norm(x).numpy(), 2.0 * y + 0.5, atol=1e-4)


def test_make_norm_kinds_and_errors():
    x = RNG.normal(size=(2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(layers.make_norm("none")(x).numpy(), x)
    assert isinstance(layers.make_norm("batch"), keras.layers.BatchNormalization)
    with pytest.raises(ValueError, match="model.norm"):
        layers.make_norm("layer")


# ---------------------------------------------------------------- blocks


def test_down_block_is_lrelu_conv_norm():
    x = RNG.normal(size=(1, 8, 6, 3)).astype(np.float32)
    block = layers.DownBlock(5, norm="none")
    y = block(x).numpy()
    assert y.shape == (1, 4, 3, 5)
    kernel = block.conv.kernel.numpy()
    act = np.where(x > 0, x, 0.2 * x)
    # 4x4 stride-2 conv with the release's 1-pixel padding.
    ref = tf.nn.conv2d(np.pad(act, [[0, 0], [1, 1], [1, 1], [0, 0]]), kernel, 2, "VALID").numpy()
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_up_block_same_padding_equals_release_crop():
    """4x4 stride-2 'same' transposed conv == 'valid' transposed conv cropped 1 px (the releases)."""
    x = RNG.normal(size=(1, 3, 4, 6)).astype(np.float32)
    block = layers.UpBlock(5, norm="none")
    y = block(x).numpy()
    assert y.shape == (1, 6, 8, 5)
    valid = keras.layers.Conv2DTranspose(5, 4, strides=2, padding="valid", use_bias=False)
    valid.build(x.shape)
    valid.kernel.assign(block.conv.kernel)
    ref = valid(np.maximum(x, 0)).numpy()[:, 1:-1, 1:-1]
    assert ref.shape == y.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_up_block_dropout_only_in_training():
    x = np.ones((2, 4, 4, 16), np.float32)
    block = layers.UpBlock(16, norm="none", dropout=0.5)
    a = block(x, training=False).numpy()
    np.testing.assert_array_equal(a, block(x, training=False).numpy())
    b = block(x, training=True).numpy()
    # Whole channels dropped (SpatialDropout2D): some channel of some sample is all zero.
    dropped = np.all(b == 0, axis=(1, 2))
    assert dropped.any() and not dropped.all()


def test_residual_block_adds_input():
    x = RNG.normal(size=(1, 4, 4, 6)).astype(np.float32)
    block = layers.ResidualBlock(6, norm="instance")
    block.build(x.shape)
    kernels = [v for v in block.trainable_variables if "kernel" in v.path]
    assert len(kernels) == 2
    for v in kernels:
        v.assign(tf.zeros_like(v))
    # Zero convs: the norm of a constant map gives beta = 0, so the block is the identity.
    np.testing.assert_allclose(block(x).numpy(), x, atol=1e-6)
    with pytest.raises(ValueError, match="input channels"):
        layers.ResidualBlock(5)(x)


# ---------------------------------------------------------------- deformable skip


METHODS = pytest.mark.parametrize("method", ["dense", "sparse"])


@METHODS
def test_deformable_skip_identity_returns_input(method):
    x = RNG.normal(size=(2, 6, 4, 3)).astype(np.float32)  # negative values included
    masks = np.ones((2, geometry.NUM_PARTS, 12, 8), np.float32)  # image = 2x the features
    y = layers.DeformableSkip(method)(x, _identity(batch=2), masks).numpy()
    np.testing.assert_allclose(y, x, atol=1e-6)


@METHODS
@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -2), (4, 2), (-2, 6), (40, 0)])
def test_deformable_skip_translation_moves_features(method, dx, dy):
    x = RNG.normal(size=(2, 8, 6, 2)).astype(np.float32)
    masks = np.zeros((2, geometry.NUM_PARTS, 16, 12), np.float32)
    masks[:, 5] = 1.0  # one part covers everything; the others (identity) cover nothing
    # Image-pixel translation (dx, dy) is (dx / 2, dy / 2) at this half-resolution level.
    t = _identity(batch=2)
    t[:, 5] = _translation(dx, dy, k=1)[:, 0]
    y = layers.DeformableSkip(method)(x, t, masks).numpy()
    np.testing.assert_allclose(y, _shift_reference(x, dx // 2, dy // 2), atol=1e-5)


@METHODS
def test_deformable_skip_zero_mask_part_contributes_nothing(method):
    x = RNG.normal(size=(1, 6, 6, 3)).astype(np.float32)
    t = _identity()
    t[0, 3] = [0.5, 0.3, 1.7, -0.2, 1.1, 0.4, 0, 0]  # arbitrary warp for part 3
    masks = np.zeros((1, geometry.NUM_PARTS, 6, 6), np.float32)
    masks[0, 0] = 1.0  # only part 0 (identity) covers
    skip = layers.DeformableSkip(method)
    np.testing.assert_allclose(skip(x, t, masks).numpy(), x, atol=1e-6)
    # Now part 3 covers too: where its warp is larger than x the max takes it.
    masks[0, 3] = 1.0
    y = skip(x, t, masks).numpy()
    warped3 = geometry.warp(x, t[:, 3]).numpy()
    np.testing.assert_allclose(y, np.maximum(x, warped3), atol=1e-5)


@METHODS
def test_deformable_skip_uncovered_pixels_are_zero_and_masks_area_resized(method):
    x = np.abs(RNG.normal(size=(1, 4, 4, 2))).astype(np.float32) + 0.1
    masks = np.zeros((1, geometry.NUM_PARTS, 8, 8), np.float32)
    # Part 2 covers one image pixel of each 2x2 block in the top half: area 1/4 per feature pixel.
    masks[0, 2, 0:4:2, 0::2] = 1.0
    masks[0, 2, 1:4:2, 1::2] = 0.0
    y = layers.DeformableSkip(method)(x, _identity(), masks).numpy()
    expected = np.zeros_like(x)
    expected[:, :2] = 0.25 * x[:, :2]
    np.testing.assert_allclose(y, expected, atol=1e-6)


def test_deformable_skip_rejects_non_integer_factor():
    x = np.zeros((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="integer multiple"):
        layers.DeformableSkip()(x, _identity(), np.ones((1, geometry.NUM_PARTS, 6, 6), np.float32))
    with pytest.raises(ValueError, match="integer multiple"):
        layers.DeformableSkip()(x, _identity(), np.ones((1, geometry.NUM_PARTS, 8, 4), np.float32))


def test_deformable_skip_matches_geometry_warp_on_real_poses():
    h, w = 32, 16
    rng = np.random.default_rng(3)
    src = np.stack([rng.uniform(4, h - 4, (2, 18)), rng.uniform(2, w - 2, (2, 18))], -1).astype(np.float32)
    tgt = np.stack([rng.uniform(4, h - 4, (2, 18)), rng.uniform(2, w - 2, (2, 18))], -1).astype(np.float32)
    transforms = geometry.part_transforms(src, tgt)
    masks = geometry.part_masks(tgt, h, w)
    x = tf.constant(rng.normal(size=(2, 16, 8, 4)).astype(np.float32))
    # Independent reference: geometry.warp per part, numpy mask, max and zero fill.
    small = masks.numpy().reshape(2, 10, 16, 2, 8, 2).mean(axis=(3, 5))[..., None]
    warped = np.stack([geometry.warp(x, geometry.scale_transforms(transforms[:, k], 0.5)).numpy()
                       for k in range(10)], 1)  # fmt: skip
    vals = np.where(small > 0, warped * small, -np.inf).max(axis=1)
    ref = np.where(np.isfinite(vals), vals, 0.0)
    weights = tf.constant(rng.normal(size=(2, 16, 8, 4)).astype(np.float32))
    results = {}
    for method in ("dense", "sparse", "auto"):
        skip = layers.DeformableSkip(method)

        def f(x, skip=skip):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = skip(x, transforms, masks)
                loss = tf.reduce_sum(y * weights)
            return y, tape.gradient(loss, x)

        for xla in (False, True):
            if method == "sparse" and xla:
                continue  # dynamic shapes: "auto" takes the dense path under XLA
            y, g = tf.function(f, jit_compile=xla)(x)
            np.testing.assert_allclose(y.numpy(), ref, atol=1e-5, err_msg=f"{method} xla={xla}")
            results[(method, xla)] = g.numpy()
    # Same gradients whichever path computed them.
    for key, g in results.items():
        np.testing.assert_allclose(g, results[("dense", False)], atol=1e-5, err_msg=str(key))


@METHODS
def test_deformable_skip_keeps_float32_transforms_under_mixed_precision(method):
    """bfloat16 transforms would round a 64.25 px shift to 64 px; the layer must not autocast them."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        skip = layers.DeformableSkip(method)
        x = np.zeros((1, 1, 128, 1), np.float32)
        x[0, 0, 1::2, 0] = 1.0  # 0, 1, 0, 1, ... along x
        masks = np.ones((1, geometry.NUM_PARTS, 1, 128), np.float32)
        y = skip(tf.cast(x, tf.bfloat16), _translation(64.25, 0.0), masks)
        assert y.dtype == tf.bfloat16
        y = tf.cast(y, tf.float32).numpy()[0, 0, :60, 0]
        # Sample at x + 64.25: 0.25 on even x, 0.75 on odd x.
        np.testing.assert_allclose(y[0::2], 0.25, atol=1e-2)
        np.testing.assert_allclose(y[1::2], 0.75, atol=1e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@METHODS
def test_deformable_skip_gradients_flow_to_features(method):
    x = tf.constant(RNG.normal(size=(1, 4, 4, 2)).astype(np.float32))
    masks = np.ones((1, geometry.NUM_PARTS, 4, 4), np.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layers.DeformableSkip(method)(x, _translation(1.0, 0.0), masks)
        loss = tf.reduce_sum(y)
    g = tape.gradient(loss, x).numpy()
    # out[:, :, j] = in[:, :, j + 1]: column 0 feeds nothing, the others one output each.
    np.testing.assert_allclose(g[:, :, 0], 0.0)
    np.testing.assert_allclose(g[:, :, 1:], 1.0, atol=1e-6)


# ---------------------------------------------------------------- serialization


@pytest.mark.parametrize(
    "layer,shape",
    [
        (layers.InstanceNormSingle(epsilon=1e-4), (1, 4, 4, 3)),
        (layers.DownBlock(6, norm="instance_single"), (1, 4, 4, 3)),
        (layers.UpBlock(6, norm="batch", dropout=0.25), (1, 4, 4, 3)),
        (layers.ResidualBlock(3, norm="none"), (1, 4, 4, 3)),
    ],
)
def test_layer_config_round_trip(layer, shape):
    x = RNG.normal(size=shape).astype(np.float32)
    y = layer(x).numpy()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), y, atol=1e-6)
    # Also through the registered name (what .keras files store).
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(again) is type(layer) and again.get_config() == config


def test_deformable_skip_config_round_trip():
    skip = layers.DeformableSkip("sparse", name="skip3")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(skip))
    assert isinstance(clone, layers.DeformableSkip) and clone.name == "skip3" and clone.method == "sparse"
    assert clone.get_config() == skip.get_config()
    with pytest.raises(ValueError, match="method"):
        layers.DeformableSkip("fast")
