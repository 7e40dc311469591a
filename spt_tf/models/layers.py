"""Building blocks of the SPT networks: norms, down/up blocks, the deformable skip.

Every layer is registered serializable (package ``spt_tf``) and has a complete
``get_config``; the tests round-trip each one through ``from_config``.

Block layout (the pose-gan / SPT releases): activation
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
        raise ValueError(f"DeformableSkip needs static spatial shapes; got masks {big_h}x{big_w}, features {h}x{w}")
    if big_h % h or big_w % w or big_h // h != big_w // w:
        raise ValueError(
            f"part_masks {big_h}x{big_w} are not an integer multiple (same on both axes) of the features {h}x{w}"
        )
    return big_h // h


def _in_xla_context() -> bool:
    """True while tracing inside ``tf.function(jit_compile=True)`` (or another XLA context)."""
    try:
        from tensorflow.python.ops import control_flow_util  # private, but what Keras 2 used
    except ImportError:  # pragma: no cover - a TF without it: take the static-shape path
        return True
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _neighbourhoods(features: tf.Tensor) -> tf.Tensor:
    """[B, h, w, C] -> [B, (h + 1) (w + 1), 4 C] bilinear neighbourhoods, zero outside.

    Row ``(y + 1) (w + 1) + (x + 1)`` holds ``f[y, x], f[y, x + 1], f[y + 1, x],
    f[y + 1, x + 1]`` for y in [-1, h - 1], x in [-1, w - 1]: one gather of a
    4C-wide row replaces four gathers of C-wide rows.
    """
    h, w, c = features.shape[1], features.shape[2], features.shape[3]
    p = tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]])
    n = tf.concat([p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]], axis=-1)
    return tf.reshape(n, [-1, (h + 1) * (w + 1), 4 * c])


def _corners(transforms: tf.Tensor, height: int, width: int):
    """Neighbourhood rows [B, K, h, w] int32 and bilinear weights [B, K, h, w, 4] float32.

    Same sampling as ``geometry.warp``: pixel (i, j) of the output samples the
    input at the transform of (x = j, y = i), bilinearly, zero outside.
    """
    yy, xx = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    t = transforms[..., None, None]
    sx = t[..., 0, :, :] * xx + t[..., 1, :, :] * yy + t[..., 2, :, :]
    sy = t[..., 3, :, :] * xx + t[..., 4, :, :] * yy + t[..., 5, :, :]
    y0, x0 = tf.floor(sy), tf.floor(sx)
    fy, fx = sy - y0, sx - x0
    # A sample whose whole neighbourhood is outside reads nothing.
    inside = (y0 >= -1.0) & (y0 <= height - 1.0) & (x0 >= -1.0) & (x0 <= width - 1.0)
    y0 = tf.clip_by_value(y0, -1.0, height - 1.0)
    x0 = tf.clip_by_value(x0, -1.0, width - 1.0)
    rows = tf.cast((y0 + 1.0) * (width + 1.0) + (x0 + 1.0), tf.int32)
    weights = tf.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], axis=-1)
    return rows, weights * tf.cast(inside, tf.float32)[..., None]


@keras.saving.register_keras_serializable(package="spt_tf")
class DeformableSkip(keras.layers.Layer):
    """Deformable skip connection (pose-gan; the paper, Sec. 3.3): warp per part, mask, max.

    The appearance features of the source pose are warped by each of the 10
    part transforms into the target pose (bilinear, zero fill: the sampling of
    ``geometry.warp``), multiplied by the part's target mask, and merged by a
    maximum over the parts. A part whose (area-resized) mask is zero at a pixel
    is left out of that pixel's maximum; a pixel no part covers is 0. (pose-gan
    takes the max over all 10 masked copies, so a zero-masked part there still
    contributes a 0 that wins over negative features; with pose-gan's all-ones
    torso mask the two agree wherever the torso's warp lands inside the image.)

    Two exact implementations (``method``), both gathers only:
      * "dense": all (part, pixel) pairs with static shapes, for XLA.
      * "sparse": only the pairs whose mask is nonzero (about 2.3 of the 10 parts
        per pixel on real poses: the torso, plus the limbs there) gathered with
        dynamic shapes and merged by a segment max: far less memory traffic in
        plain graph mode and eagerly, where nothing fuses.
      * "auto" (default): "dense" while tracing for XLA (``jit_compile=True``),
        else "sparse".
    Each gathers one 4C-wide bilinear neighbourhood row per sample (see
    ``_neighbourhoods``) rather than four C-wide rows.

    The layer has no weights. It does not autocast: transforms stay float32
    under a mixed precision policy (bfloat16 coordinates would be off by up to
    half a pixel per 128 pixels); the output has the features' dtype.

    Args:
      method: "auto", "dense" or "sparse".

    Call args:
      features: [B, h, w, C] source-pose features.
      transforms: [B, K, 8] target->source affine maps (``geometry`` convention)
        in pixels of the ``part_masks`` grid (the image, normally).
      part_masks: [B, K, H, W] target-pose part masks in [0, 1], with H = f h and
        W = f w for an integer f; area-resized here to (h, w), and the
        transforms rescaled by 1 / f (``geometry.scale_transforms``).

    Returns:
      [B, h, w, C], the features' dtype.
    """

    METHODS = ("auto", "dense", "sparse")

    def __init__(self, method: str = "auto", **kwargs):
        super().__init__(**kwargs)
        if method not in self.METHODS:
            raise ValueError(f"DeformableSkip method {method!r} not in {self.METHODS}")
        self.method = method
        self.autocast = False

    def call(self, features, transforms, part_masks):
        h, w, c = features.shape[1], features.shape[2], features.shape[3]
        factor = _integer_factor(part_masks.shape[2], part_masks.shape[3], h, w)
        transforms = tf.cast(transforms, tf.float32)
        if factor != 1:
            transforms = geometry.scale_transforms(transforms, 1.0 / factor)
        masks = area_resize_masks(tf.cast(part_masks, tf.float32), h, w)  # [B, K, h, w]
        rows, weights = _corners(transforms, h, w)
        weights = weights * masks[..., None]  # the mask multiplies the sample
        neighbourhoods = _neighbourhoods(features)
        method = self.method
        if method == "auto":
            method = "dense" if _in_xla_context() else "sparse"
        if method == "dense":
            return self._merge_dense(neighbourhoods, rows, weights, masks, c)
        return self._merge_sparse(neighbourhoods, rows, weights, masks, c)

    @staticmethod
    def _merge_dense(neighbourhoods, rows, weights, masks, c):
        shape = tf.shape(rows)  # [B, K, h, w]
        samples = tf.gather(neighbourhoods, tf.reshape(rows, [shape[0], -1]), batch_dims=1)
        samples = tf.reshape(samples, tf.concat([shape, [4, c]], 0))  # [B, K, h, w, 4, C]
        dtype = samples.dtype
        values = tf.reduce_sum(samples * tf.cast(weights[..., None], dtype), axis=-2)  # [B, K, h, w, C]
        covered = (masks > 0.0)[..., None]
        # Parts that do not cover a pixel get the dtype's lowest value: they never win the max.
        values = values + tf.where(covered, tf.zeros([], dtype), tf.constant(dtype.min, dtype))
        merged = tf.reduce_max(values, axis=1)
        return tf.where(tf.reduce_any(covered, axis=1), merged, tf.zeros_like(merged))

    @staticmethod
    def _merge_sparse(neighbourhoods, rows, weights, masks, c):
        shape = tf.shape(rows)  # [B, K, h, w]
        b, h, w = shape[0], shape[2], shape[3]
        n_rows = tf.shape(neighbourhoods)[1]
        batch = tf.range(b)[:, None, None, None]
        global_rows = batch * n_rows + rows
        pixels = batch * (h * w) + tf.reshape(tf.range(h * w), [1, 1, h, w])
        covered = masks > 0.0
        sel_rows = tf.boolean_mask(global_rows, covered)  # [N]
        sel_weights = tf.boolean_mask(weights, covered)  # [N, 4]
        sel_pixels = tf.boolean_mask(tf.broadcast_to(pixels, shape), covered)
        samples = tf.gather(tf.reshape(neighbourhoods, [-1, 4 * c]), sel_rows)  # [N, 4C]
        dtype = samples.dtype
        values = tf.reduce_sum(tf.reshape(samples, [-1, 4, c]) * tf.cast(sel_weights[..., None], dtype), axis=1)
        merged = tf.math.unsorted_segment_max(values, sel_pixels, b * h * w)  # lowest where uncovered
        any_covered = tf.reshape(tf.reduce_any(covered, axis=1), [-1, 1])
        merged = tf.where(any_covered, merged, tf.zeros_like(merged))
        return tf.reshape(merged, [b, h, w, c])

    def compute_output_shape(self, features_shape, transforms_shape=None, part_masks_shape=None):
        return features_shape

    def get_config(self):
        return {**super().get_config(), "method": self.method}


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
