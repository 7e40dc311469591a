"""Building blocks of the SPT networks: norms, down/up blocks, the deformable skip.

Every layer is registered serializable (package ``spt_tf``) and has a complete
``get_config``; the tests round-trip each one through ``from_config``.

Block layout (SPT.md section 5, the pose-gan / SPT releases): activation
first, then the convolution, then the norm, then (up blocks only) dropout.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spt_tf import geometry

NORMS = ("instance", "instance_single", "batch", "none")


@keras.saving.register_keras_serializable(package="spt_tf")
class InstanceNormSingle(keras.layers.Layer):
    """The releases' "instance norm": one mean/variance per sample over (H, W, C).

    Both public releases (pose-gan, SPT) normalise a ``[B, C, H, W]`` map as one
    ``[B, 1, C, H, W]`` volume, i.e. a single mean and variance per sample over
    all pixels and channels, with a scalar gamma and beta. Statistics are taken
    in float32 even under a mixed precision policy (bfloat16 sums over 10^6
    values lose the mean).

    Args:
      epsilon: added to the variance (the SPT release uses 1e-3).
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        # Like GroupNormalization: the layer casts itself, so keep inputs as given.
        self.autocast = False

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"InstanceNormSingle expects [B, H, W, C] inputs, got shape {input_shape}")
        self.gamma = self.add_weight(shape=(1,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(1,), initializer="zeros", name="beta")

    def call(self, inputs):
        x = tf.cast(inputs, tf.float32)
        mean, var = tf.nn.moments(x, axes=[1, 2, 3], keepdims=True)
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        y = y * tf.cast(self.gamma, tf.float32) + tf.cast(self.beta, tf.float32)
        return tf.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def make_norm(kind: str, name: str | None = None) -> keras.layers.Layer:
    """The normalization layer of ``model.norm``.

    Args:
      kind: "instance" (per-channel instance norm, ``GroupNormalization(groups=-1)``,
        the project default), "instance_single" (:class:`InstanceNormSingle`, the
        releases' variant), "batch" (``BatchNormalization``) or "none" (identity).
      name: layer name.

    Returns:
      A Keras layer mapping ``[B, H, W, C]`` to the same shape.

    Raises:
      ValueError: unknown ``kind``.
    """
    if kind == "instance":
        return keras.layers.GroupNormalization(groups=-1, epsilon=1e-3, name=name)
    if kind == "instance_single":
        return InstanceNormSingle(name=name)
    if kind == "batch":
        return keras.layers.BatchNormalization(name=name)
    if kind == "none":
        return keras.layers.Identity(name=name)
    raise ValueError(f"unknown norm {kind!r} (config field model.norm); choose from {NORMS}")


def scaled_width(base: int, width_multiplier: float) -> int:
    """``round(base * width_multiplier)``, at least 1."""
    return max(1, int(round(base * float(width_multiplier))))


@keras.saving.register_keras_serializable(package="spt_tf")
class DownBlock(keras.layers.Layer):
    """LeakyReLU(0.2) -> 4x4 stride-2 conv (no bias) -> norm.

    ``[B, H, W, C] -> [B, H/2, W/2, filters]`` (H, W even).

    Args:
      filters: output channels.
      norm: a :func:`make_norm` kind; "none" for the encoder's last block.
    """

    def __init__(self, filters: int, norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm = norm
        self.act = keras.layers.LeakyReLU(0.2, name="lrelu")
        self.conv = keras.layers.Conv2D(self.filters, 4, strides=2, padding="same", use_bias=False, name="conv")
        self.norm_layer = make_norm(norm, name="norm")

    def build(self, input_shape):
        self.conv.build(input_shape)
        out_shape = self.conv.compute_output_shape(input_shape)
        self.norm_layer.build(out_shape)

    def call(self, x, training=None):
        return self.norm_layer(self.conv(self.act(x)), training=training)

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm": self.norm}


@keras.saving.register_keras_serializable(package="spt_tf")
class UpBlock(keras.layers.Layer):
    """ReLU -> 4x4 stride-2 transposed conv (no bias) -> norm -> channel dropout.

    ``[B, H, W, C] -> [B, 2H, 2W, filters]``. The releases use a "valid"
    transposed conv (output 2H + 2) and crop 1 pixel on each side; a "same"
    transposed conv with a 4x4 kernel and stride 2 is exactly that crop (the
    tests check the equivalence).

    Args:
      filters: output channels.
      norm: a :func:`make_norm` kind.
      dropout: rate of ``SpatialDropout2D`` (whole channels, as the SPT
        release's ``nn.Dropout2d``); 0 disables.
    """

    def __init__(self, filters: int, norm: str = "instance", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm = norm
        self.dropout = float(dropout)
        self.act = keras.layers.ReLU(name="relu")
        self.conv = keras.layers.Conv2DTranspose(
            self.filters, 4, strides=2, padding="same", use_bias=False, name="conv"
        )
        self.norm_layer = make_norm(norm, name="norm")
        self.drop = keras.layers.SpatialDropout2D(self.dropout, name="dropout") if self.dropout > 0 else None

    def build(self, input_shape):
        self.conv.build(input_shape)
        out_shape = self.conv.compute_output_shape(input_shape)
        self.norm_layer.build(out_shape)

    def call(self, x, training=None):
        x = self.norm_layer(self.conv(self.act(x)), training=training)
        if self.drop is not None:
            x = self.drop(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm": self.norm, "dropout": self.dropout}


def area_resize_masks(part_masks: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Average-pool ``[B, K, H, W]`` masks by the integer factor ``H / height``.

    Raises:
      ValueError: the factor is not an integer, or differs between the axes.
    """
    big_h, big_w = part_masks.shape[2], part_masks.shape[3]
    factor = _integer_factor(big_h, big_w, height, width)
    if factor == 1:
        return part_masks
    k = part_masks.shape[1]
    m = tf.reshape(part_masks, [-1, k, height, factor, width, factor])
    return tf.reduce_mean(m, axis=[3, 5])


def _integer_factor(big_h, big_w, h, w) -> int:
    if None in (big_h, big_w, h, w):
        raise ValueError(
            f"DeformableSkip needs static spatial shapes; got masks {big_h}x{big_w}, features {h}x{w}"
        )
    if big_h % h or big_w % w or big_h // h != big_w // w:
        raise ValueError(
            f"part_masks {big_h}x{big_w} are not an integer multiple (same on both axes) "
            f"of the features {h}x{w}"
        )
    return big_h // h


@keras.saving.register_keras_serializable(package="spt_tf")
class DeformableSkip(keras.layers.Layer):
    """Deformable skip connection (pose-gan, SPT.md section 6): warp per part, mask, max.

    The appearance features of the source pose are warped by each of the 10
    part transforms into the target pose, multiplied by the part's target mask,
    and merged by a maximum over the parts. A part whose (area-resized) mask is
    zero at a pixel is left out of that pixel's maximum; a pixel no part covers
    is 0. (pose-gan takes the max over all 10 masked copies, so a zero-masked
    part there still contributes a 0 that wins over negative features; with
    pose-gan's all-ones torso mask the two agree wherever the torso covers.)

    The layer has no weights. It does not autocast: transforms stay float32
    under a mixed precision policy (bfloat16 coordinates would be off by up to
    half a pixel per 128 pixels); the output has the features' dtype.

    Call args:
      features: [B, h, w, C] source-pose features.
      transforms: [B, K, 8] target->source affine maps (``geometry`` convention)
        in pixels of the ``part_masks`` grid (the image, normally).
      part_masks: [B, K, H, W] target-pose part masks in {0, 1} (or soft), with
        H = f h and W = f w for an integer f; area-resized here to (h, w), and the
        transforms rescaled by 1 / f (``geometry.scale_transforms``).

    Returns:
      [B, h, w, C], the features' dtype.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.autocast = False

    def call(self, features, transforms, part_masks):
        h, w = features.shape[1], features.shape[2]
        factor = _integer_factor(part_masks.shape[2], part_masks.shape[3], h, w)
        transforms = tf.cast(transforms, tf.float32)
        if factor != 1:
            transforms = geometry.scale_transforms(transforms, 1.0 / factor)
        masks = area_resize_masks(tf.cast(part_masks, tf.float32), h, w)[..., None]  # [B, K, h, w, 1]
        warped = geometry.warp(features, transforms)  # [B, K, h, w, C]
        dtype = warped.dtype
        covered = masks > 0.0
        # Uncovered parts get the dtype's lowest value so that they never win the max.
        offset = tf.where(covered, tf.zeros([], dtype), tf.constant(dtype.min, dtype))  # [B, K, h, w, 1]
        merged = tf.reduce_max(warped * tf.cast(masks, dtype) + offset, axis=1)
        any_covered = tf.reduce_any(covered, axis=1)  # [B, h, w, 1]
        return tf.where(any_covered, merged, tf.zeros_like(merged))

    def compute_output_shape(self, features_shape, transforms_shape=None, part_masks_shape=None):
        return features_shape

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="spt_tf")
class ResidualBlock(keras.layers.Layer):
    """CycleGAN residual block: (conv3x3 -> norm -> ReLU -> conv3x3 -> norm) + x.

    Args:
      filters: channels (input and output).
      norm: a :func:`make_norm` kind.
    """

    def __init__(self, filters: int, norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.norm = norm
        use_bias = norm == "none"
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=use_bias, name="conv1")
        self.norm1 = make_norm(norm, name="norm1")
        self.conv2 = keras.layers.Conv2D(self.filters, 3, padding="same", use_bias=use_bias, name="conv2")
        self.norm2 = make_norm(norm, name="norm2")

    def build(self, input_shape):
        if input_shape[-1] != self.filters:
            raise ValueError(f"ResidualBlock with {self.filters} filters got {input_shape[-1]} input channels")
        for layer in (self.conv1, self.norm1, self.conv2, self.norm2):
            layer.build(input_shape)

    def call(self, x, training=None):
        y = tf.nn.relu(self.norm1(self.conv1(x), training=training))
        y = self.norm2(self.conv2(y), training=training)
        return x + y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "norm": self.norm}
