"""The generators: H_S (semantic), H_A (appearance) and the progressive 256 H_A.

Shared U-Net shape (the paper, Sec. 3.2 and 3.3; the pose-gan / SPT releases):

* Encoder: level 0 is a 3x3 conv with bias at full resolution (no norm), then
  one :class:`~spt_tf.models.layers.DownBlock` per level; the deepest block has
  no norm. Base filters 64, 128, 256, 512, 512, 512, 512, ... times
  ``width_multiplier``.
* Depth follows the resolution: ``num_downsamples`` halvings bring the larger
  side to 4 pixels (128x64 -> 5 halvings, bottleneck 4x2; 128x128 -> 5, 4x4,
  as the SPT release at 128; 256x256 -> 6, 4x4, pose-gan's extra 512 level).
* Sides that are not a multiple of ``2 ** num_downsamples`` are zero-padded at
  the bottom/right inside the network and the output cropped back: 256x176
  (176 = 11 x 16) runs as 256x192 with a 4x3 bottleneck. Padding only at the
  bottom/right keeps pixel coordinates, so the part transforms stay valid; the
  padded pixels have zero part masks and receive no warped features. (The
  alternative, a depth where both sides divide, would stop 256x176 at a 16x11
  bottleneck.)
* Decoder: one :class:`~spt_tf.models.layers.UpBlock` per level back up, each
  consuming the previous output concatenated with the skip of its level;
  decoder filters at level l equal the encoder's base filters at level l + 1
  (512, 512, 512, 256, 128 at 128x128, as the release); dropout on the first 3
  up blocks; final ReLU, 3x3 conv with bias, then softmax (H_S) or tanh (H_A)
  computed in float32.

Inputs are dicts (``docs/design.md``). The models do not autocast their
inputs: the convolutions cast images to the compute dtype themselves while the
part transforms stay float32 under mixed precision. Outputs are float32.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from spt_tf import geometry
from spt_tf.models.layers import DeformableSkip, DownBlock, UpBlock, make_norm, scaled_width

ENCODER_BASE_FILTERS = (64, 128, 256, 512)  # then 512 for every deeper level
NUM_KEYPOINTS = geometry.NUM_KEYPOINTS
NUM_PARTS = geometry.NUM_PARTS
DECODER_DROPOUT_BLOCKS = 3


def num_downsamples_for(height: int, width: int) -> int:
    """Encoder halvings for an image: the larger side ends at 4 pixels (at least 1 halving)."""
    if height < 2 or width < 2:
        raise ValueError(f"image size {height}x{width} is too small for the generators")
    return max(1, int(math.floor(math.log2(max(height, width) / 4.0))))


def padded_size(size: int, num_downsamples: int) -> int:
    """``size`` rounded up to a multiple of ``2 ** num_downsamples``."""
    m = 2**num_downsamples
    return int(math.ceil(size / m) * m)


def encoder_filters(num_downsamples: int, width_multiplier: float) -> list[int]:
    """Filters of encoder levels 0..num_downsamples (64, 128, 256, 512, 512, ...) scaled."""
    base = [ENCODER_BASE_FILTERS[min(i, len(ENCODER_BASE_FILTERS) - 1)] for i in range(num_downsamples + 1)]
    return [scaled_width(b, width_multiplier) for b in base]


def _pad_bottom_right(x: tf.Tensor, pad_h: int, pad_w: int, spatial_axes=(1, 2)) -> tf.Tensor:
    if not pad_h and not pad_w:
        return x
    paddings = [[0, 0] for _ in range(len(x.shape))]
    paddings[spatial_axes[0]] = [0, pad_h]
    paddings[spatial_axes[1]] = [0, pad_w]
    return tf.pad(x, paddings)


def _concat_shape(*shapes):
    """Shape of a channel concatenation of [B, h, w, C_i] maps."""
    first = tuple(shapes[0])
    return first[:-1] + (sum(int(s[-1]) for s in shapes),)


def _require(inputs, keys, owner: str):
    if not isinstance(inputs, dict):
        raise TypeError(f"{owner} takes a dict of tensors with keys {keys}, got {type(inputs).__name__}")
    missing = [k for k in keys if k not in inputs]
    if missing:
        raise KeyError(f"{owner} inputs lack {missing}; expected keys {keys}")


def _check_shape(name: str, x, expected: tuple, owner: str):
    got = tuple(x.shape[1:])
    if len(got) != len(expected) or any(e is not None and g is not None and g != e for g, e in zip(got, expected)):
        raise ValueError(
            f"{owner}: input {name!r} has shape [B, {', '.join(map(str, got))}], expected "
            f"[B, {', '.join(map(str, expected))}]"
        )


@keras.saving.register_keras_serializable(package="spt_tf")
class UNetEncoder(keras.layers.Layer):
    """Level 0: 3x3 conv with bias (no norm); then one DownBlock per level, the last without norm.

    Call: ``[B, H, W, C] -> list`` of ``num_downsamples + 1`` maps, level l of size
    ``[B, H / 2^l, W / 2^l, filters[l]]``.

    Args:
      filters: channels per level (length = levels).
      norm: a :func:`~spt_tf.models.layers.make_norm` kind.
      norm_last: also normalise the deepest block (the progressive generator's
        local encoder, whose last level feeds the middle of the network).
    """

    def __init__(self, filters, norm: str = "instance", norm_last: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = [int(f) for f in filters]
        self.norm = norm
        self.norm_last = bool(norm_last)
        self.first = keras.layers.Conv2D(self.filters[0], 3, padding="same", use_bias=True, name="conv0")
        n = len(self.filters)
        self.blocks = [
            DownBlock(f, norm=norm if (i < n - 1 or self.norm_last) else "none", name=f"down{i}")
            for i, f in enumerate(self.filters[1:], start=1)
        ]

    def build(self, input_shape):
        self.first.build(input_shape)
        shape = self.first.compute_output_shape(input_shape)
        for block in self.blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)

    def compute_output_shape(self, input_shape):
        shapes = [tuple(self.first.compute_output_shape(input_shape))]
        for block in self.blocks:
            shapes.append(tuple(block.compute_output_shape(shapes[-1])))
        return shapes

    def call(self, x, training=None):
        out = self.first(x)
        skips = [out]
        for block in self.blocks:
            out = block(out, training=training)
            skips.append(out)
        return skips

    def get_config(self):
        return {**super().get_config(), "filters": list(self.filters), "norm": self.norm, "norm_last": self.norm_last}


@keras.saving.register_keras_serializable(package="spt_tf")
class UNetDecoder(keras.layers.Layer):
    """Up blocks from the bottleneck to level 0, then ReLU -> 3x3 conv (bias).

    Call: ``skips`` (list, level 0 first, each ``[B, H/2^l, W/2^l, C_l]``) ->
    ``(logits [B, H, W, out_channels], features)`` where ``features`` is the
    level-0 concatenation (decoder output and level-0 skip) that the final conv
    reads: the progressive generator's local enhancer consumes it.

    Args:
      filters: output channels of the up block into level l, for l = 0..n-1.
      out_channels: channels of the final conv.
      norm: a :func:`~spt_tf.models.layers.make_norm` kind.
      dropout: rate on the first 3 up blocks (the deepest ones).
    """

    def __init__(self, filters, out_channels: int, norm: str = "instance", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = [int(f) for f in filters]
        self.out_channels = int(out_channels)
        self.norm = norm
        self.dropout = float(dropout)
        n = len(self.filters)
        # Built deepest first: block k upsamples into level n - 1 - k.
        self.blocks = [
            UpBlock(
                self.filters[n - 1 - k],
                norm=norm,
                dropout=self.dropout if k < DECODER_DROPOUT_BLOCKS else 0.0,
                name=f"up{n - 1 - k}",
            )
            for k in range(n)
        ]
        self.final = keras.layers.Conv2D(self.out_channels, 3, padding="same", use_bias=True, name="conv_out")

    def features_shape(self, skip_shapes):
        """Shape of the level-0 features for skips of the given shapes."""
        shape = tuple(skip_shapes[-1])
        for k, block in enumerate(self.blocks):
            if k > 0:
                shape = _concat_shape(shape, skip_shapes[-1 - k])
            shape = tuple(block.compute_output_shape(shape))
        return _concat_shape(shape, skip_shapes[0])

    def build(self, skip_shapes):
        shape = tuple(skip_shapes[-1])
        for k, block in enumerate(self.blocks):
            if k > 0:
                shape = _concat_shape(shape, skip_shapes[-1 - k])
            block.build(shape)
            shape = tuple(block.compute_output_shape(shape))
        self.final.build(_concat_shape(shape, skip_shapes[0]))

    def call(self, skips, training=None):
        if len(skips) != len(self.blocks) + 1:
            raise ValueError(
                f"UNetDecoder with {len(self.blocks)} up blocks needs {len(self.blocks) + 1} skips, got {len(skips)}"
            )
        out = skips[-1]
        for k, block in enumerate(self.blocks):
            if k > 0:
                out = tf.concat([out, skips[-1 - k]], axis=-1)
            out = block(out, training=training)
        features = tf.concat([out, skips[0]], axis=-1)
        return self.final(tf.nn.relu(features)), features

    def get_config(self):
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "out_channels": self.out_channels,
            "norm": self.norm,
            "dropout": self.dropout,
        }


class _UNetGenerator(keras.Model):
    """Shared sizes and padding logic of H_S and H_A."""

    def __init__(
        self,
        height: int,
        width: int,
        num_labels: int = 10,
        width_multiplier: float = 1.0,
        norm: str = "instance",
        dropout: float = 0.0,
        num_downsamples: int | None = None,
        **kwargs,
    ):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.height = int(height)
        self.width = int(width)
        self.num_labels = int(num_labels)
        self.width_multiplier = float(width_multiplier)
        self.norm = norm
        self.dropout = float(dropout)
        make_norm(norm)  # validates the kind early, with the config field in the message
        self.num_downsamples = int(
            num_downsamples if num_downsamples is not None else num_downsamples_for(self.height, self.width)
        )
        self.padded_height = padded_size(self.height, self.num_downsamples)
        self.padded_width = padded_size(self.width, self.num_downsamples)
        self.enc_filters = encoder_filters(self.num_downsamples, self.width_multiplier)
        # Decoder into level l has the encoder's base filters of level l + 1.
        self.dec_filters = self.enc_filters[1:]

    def _pad(self, x, spatial_axes=(1, 2)):
        return _pad_bottom_right(x, self.padded_height - self.height, self.padded_width - self.width, spatial_axes)

    def _crop(self, x):
        if self.padded_height == self.height and self.padded_width == self.width:
            return x
        return x[:, : self.height, : self.width]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "height": self.height,
            "width": self.width,
            "num_labels": self.num_labels,
            "width_multiplier": self.width_multiplier,
            "norm": self.norm,
            "dropout": self.dropout,
            "num_downsamples": self.num_downsamples,
        }


@keras.saving.register_keras_serializable(package="spt_tf")
class SemanticGenerator(_UNetGenerator):
    """H_S: source parsing + poses -> target parsing probabilities (the paper, Sec. 3.2).

    Encoders ``E_S(S_ps ⊕ p_s ⊕ M_ps)`` and ``E_P(p_t ⊕ M_pt)``; the U-Net
    decoder ``G_S`` consumes both encoders' skips concatenated per level (no
    warps). Ends in a float32 softmax over the labels.

    Call:
      inputs: dict with ``source_parsing [B, H, W, L]`` (one-hot or
        probabilities), ``source_pose [B, H, W, 18]`` and ``source_mask
        [B, H, W, 1]`` in [0, 1], ``target_pose``, ``target_mask`` likewise.
      training: dropout / batch-norm mode.

    Returns:
      [B, H, W, L] float32 probabilities (sum to 1 over L).
    """

    INPUT_KEYS = ("source_parsing", "source_pose", "source_mask", "target_pose", "target_mask")

    def __init__(
        self,
        height,
        width,
        num_labels=10,
        width_multiplier=1.0,
        norm="instance",
        dropout=0.0,
        num_downsamples=None,
        **kwargs,
    ):
        super().__init__(height, width, num_labels, width_multiplier, norm, dropout, num_downsamples, **kwargs)
        self.source_encoder = UNetEncoder(self.enc_filters, norm, name="source_encoder")  # E_S
        self.pose_encoder = UNetEncoder(self.enc_filters, norm, name="pose_encoder")  # E_P
        self.decoder = UNetDecoder(self.dec_filters, self.num_labels, norm, self.dropout, name="decoder")
        self.softmax = keras.layers.Activation("softmax", dtype="float32", name="softmax")

    def build(self, input_shape):
        b = input_shape["source_parsing"][0]
        hp, wp = self.padded_height, self.padded_width
        src = (b, hp, wp, self.num_labels + NUM_KEYPOINTS + 1)
        tgt = (b, hp, wp, NUM_KEYPOINTS + 1)
        self.source_encoder.build(src)
        self.pose_encoder.build(tgt)
        skips = [
            _concat_shape(a, t)
            for a, t in zip(self.source_encoder.compute_output_shape(src), self.pose_encoder.compute_output_shape(tgt))
        ]
        self.decoder.build(skips)

    def compute_output_shape(self, input_shape):
        return (input_shape["source_parsing"][0], self.height, self.width, self.num_labels)

    def call(self, inputs, training=None):
        _require(inputs, self.INPUT_KEYS, type(self).__name__)
        h, w, n = self.height, self.width, self.num_labels
        expected = {
            "source_parsing": (h, w, n),
            "source_pose": (h, w, NUM_KEYPOINTS),
            "source_mask": (h, w, 1),
            "target_pose": (h, w, NUM_KEYPOINTS),
            "target_mask": (h, w, 1),
        }
        for key, shape in expected.items():
            _check_shape(key, inputs[key], shape, type(self).__name__)
        src = tf.concat([inputs["source_parsing"], inputs["source_pose"], inputs["source_mask"]], axis=-1)
        tgt = tf.concat([inputs["target_pose"], inputs["target_mask"]], axis=-1)
        skips_s = self.source_encoder(self._pad(tf.cast(src, tf.float32)), training=training)
        skips_p = self.pose_encoder(self._pad(tf.cast(tgt, tf.float32)), training=training)
        skips = [tf.concat([a, b], axis=-1) for a, b in zip(skips_s, skips_p)]
        logits, _ = self.decoder(skips, training=training)
        return self.softmax(self._crop(logits))


@keras.saving.register_keras_serializable(package="spt_tf")
class AppearanceGenerator(_UNetGenerator):
    """H_A: source image + parsings + poses -> image in the target pose (the paper, Sec. 3.3).

    Encoders ``E_A(I_ps ⊕ S_ps ⊕ p_s)`` and ``E'_S(S̃_pt ⊕ p_t)``. On the
    ``deformable_levels`` highest-resolution levels the appearance skip goes
    through a :class:`~spt_tf.models.layers.DeformableSkip` (per-part warp into
    the target pose, mask, max) before being concatenated with the target
    encoder's skip; deeper levels are concatenated unwarped. Decoder ``G_A``
    ends in a float32 tanh.

    Args:
      drop_background_channel: feed parsing channels 1..L-1 only (the SPT
        release drops the background label).
      deformable_levels: number of warped levels, from level 0 (full resolution).
      paint_input: the target encoder also reads :func:`paint_by_labels` of the
        source image and the two parsings (3 more channels): the colours the
        parsing implies, from which the network learns the rest (texture,
        shading, edges). Not in the paper; part of the offline recipe
        (``model.paint_input``, docs/design.md).
      paint_residual: the decoder's output is a residual over the painted
        target parsing, ``tanh(logits + atanh(paint))``: an untrained H_A
        starts near the paint-by-numbers image and learns what it lacks
        (texture, shading, shape corrections). Not in the paper; part of the
        offline recipe (``model.paint_residual``, docs/design.md).
      residual_person_only: with ``paint_residual``, the residual is weighted by
        the target parsing's person probability (1 - background): the
        background stays the paint's, the source's mean background colour. For
        data whose photos of one person have unrelated backgrounds, where the
        target's background cannot be known from the source
        (``model.residual_person_only``).
      skip_label_gate: the deformable skips carry a part's warped source
        features only where that part's warp of the source's person labels
        agrees with the target's label (:func:`label_gated_masks`): a face warped
        onto a back view's hair, or the source's background, does not pass.
        Not in the paper; part of the offline recipe (``model.skip_label_gate``,
        docs/design.md).
      (others as :class:`SemanticGenerator`.)

    Call:
      inputs: dict with ``image [B, H, W, 3]`` in [-1, 1], ``source_parsing
        [B, H, W, L]``, ``source_pose [B, H, W, 18]``, ``target_parsing``,
        ``target_pose``, ``transforms [B, 10, 8]`` (target -> source, image
        pixels, ``geometry.part_transforms``), ``part_masks [B, 10, H, W]``
        (``geometry.part_masks`` of the target pose).
      training: dropout / batch-norm mode.
      return_features: also return the decoder's level-0 features.

    Returns:
      [B, H, W, 3] float32 in [-1, 1]; with ``return_features`` a tuple
      ``(image, features [B, H_padded, W_padded, C])``.
    """

    INPUT_KEYS = (
        "image", "source_parsing", "source_pose", "target_parsing", "target_pose", "transforms", "part_masks",
    )  # fmt: skip

    def __init__(self, height, width, num_labels=10, width_multiplier=1.0, norm="instance", dropout=0.0,
                 num_downsamples=None, deformable_levels=4, drop_background_channel=True, paint_input=False,
                 paint_residual=False, residual_person_only=False, skip_label_gate=False, **kwargs):  # fmt: skip
        super().__init__(height, width, num_labels, width_multiplier, norm, dropout, num_downsamples, **kwargs)
        self.skip_label_gate = bool(skip_label_gate)
        self.paint_input = bool(paint_input)
        self.paint_residual = bool(paint_residual)
        self.residual_person_only = bool(residual_person_only)
        if self.residual_person_only and not self.paint_residual:
            raise ValueError("model.residual_person_only needs model.paint_residual")
        self.deformable_levels = int(deformable_levels)
        if not 0 <= self.deformable_levels <= self.num_downsamples + 1:
            raise ValueError(
                f"model.deformable_levels={self.deformable_levels} outside [0, {self.num_downsamples + 1}] "
                f"for a {self.height}x{self.width} generator"
            )
        self.drop_background_channel = bool(drop_background_channel)
        self.appearance_encoder = UNetEncoder(self.enc_filters, norm, name="appearance_encoder")  # E_A
        self.target_encoder = UNetEncoder(self.enc_filters, norm, name="target_encoder")  # E'_S
        self.skips = [DeformableSkip(name=f"deformable_skip{i}") for i in range(self.deformable_levels)]
        self.decoder = UNetDecoder(self.dec_filters, 3, norm, self.dropout, name="decoder")
        self.tanh = keras.layers.Activation("tanh", dtype="float32", name="tanh")

    def _parsing(self, s):
        return s[..., 1:] if self.drop_background_channel else s

    @property
    def parsing_channels(self) -> int:
        return self.num_labels - 1 if self.drop_background_channel else self.num_labels

    def _skip_shapes(self, batch):
        hp, wp = self.padded_height, self.padded_width
        app = (batch, hp, wp, 3 + self.parsing_channels + NUM_KEYPOINTS)
        tgt = (batch, hp, wp, self.parsing_channels + NUM_KEYPOINTS + (3 if self.paint_input else 0))
        return (
            app,
            tgt,
            [
                _concat_shape(a, t)
                for a, t in zip(
                    self.appearance_encoder.compute_output_shape(app), self.target_encoder.compute_output_shape(tgt)
                )
            ],
        )

    def features_shape(self, batch=None):
        """Shape of the decoder's level-0 features (``return_features``), padded size."""
        return self.decoder.features_shape(self._skip_shapes(batch)[2])

    def build(self, input_shape):
        app, tgt, skips = self._skip_shapes(input_shape["image"][0])
        self.appearance_encoder.build(app)
        self.target_encoder.build(tgt)
        self.decoder.build(skips)

    def compute_output_shape(self, input_shape):
        return (input_shape["image"][0], self.height, self.width, 3)

    def call(self, inputs, training=None, return_features=False):
        _require(inputs, self.INPUT_KEYS, type(self).__name__)
        h, w, n = self.height, self.width, self.num_labels
        expected = {
            "image": (h, w, 3),
            "source_parsing": (h, w, n),
            "source_pose": (h, w, NUM_KEYPOINTS),
            "target_parsing": (h, w, n),
            "target_pose": (h, w, NUM_KEYPOINTS),
            "transforms": (NUM_PARTS, 8),
            "part_masks": (NUM_PARTS, h, w),
        }
        for key, shape in expected.items():
            _check_shape(key, inputs[key], shape, type(self).__name__)
        f32 = tf.float32
        app = tf.concat(
            [tf.cast(inputs["image"], f32), tf.cast(self._parsing(inputs["source_parsing"]), f32),
             tf.cast(inputs["source_pose"], f32)], axis=-1)  # fmt: skip
        tgt = [tf.cast(self._parsing(inputs["target_parsing"]), f32), tf.cast(inputs["target_pose"], f32)]
        paint = None
        if self.paint_input or self.paint_residual:
            paint = paint_by_labels(inputs["image"], inputs["source_parsing"], inputs["target_parsing"])
        if self.paint_input:
            tgt.append(paint)
        tgt = tf.concat(tgt, axis=-1)
        transforms = tf.cast(inputs["transforms"], f32)
        masks = tf.cast(inputs["part_masks"], f32)
        if self.skip_label_gate:
            masks = label_gated_masks(inputs["source_parsing"], inputs["target_parsing"], transforms, masks)
        masks = self._pad(masks, spatial_axes=(2, 3))
        skips_a = self.appearance_encoder(self._pad(app), training=training)
        skips_t = self.target_encoder(self._pad(tgt), training=training)
        skips = []
        for level, (a, t) in enumerate(zip(skips_a, skips_t)):
            if level < self.deformable_levels:
                a = self.skips[level](a, transforms, masks)
            skips.append(tf.concat([a, t], axis=-1))
        logits, features = self.decoder(skips, training=training)
        logits = self._crop(logits)
        if self.paint_residual:
            logits = tf.cast(logits, f32)
            if self.residual_person_only:
                logits = logits * (1.0 - tf.cast(inputs["target_parsing"][..., :1], f32))
            logits = logits + tf.atanh(tf.clip_by_value(paint, -PAINT_CLIP, PAINT_CLIP))
        image = self.tanh(logits)
        if return_features:
            return image, features
        return image

    def get_config(self):
        return {
            **super().get_config(),
            "deformable_levels": self.deformable_levels,
            "drop_background_channel": self.drop_background_channel,
            "paint_input": self.paint_input,
            "paint_residual": self.paint_residual,
            "residual_person_only": self.residual_person_only,
            "skip_label_gate": self.skip_label_gate,
        }


def label_gated_masks(source_parsing, target_parsing, transforms, part_masks) -> tf.Tensor:
    """The part masks times the labels' agreement under each part's warp.

    For part ``k`` and target pixel ``x``: ``sum_l warp_k(S_s)[x, l] * S_t[x, l]`` over the
    person labels (``l >= 1``), the probability that the source pixel the part's transform
    brings to ``x`` has the label the target wants there (bilinear, zero outside the image).
    Multiplied into ``part_masks``, it keeps a deformable skip from carrying what the target
    does not have at that pixel: the source's face onto a back view's hair, one garment onto
    another, or the source's background (label 0 never agrees).

    Args:
      source_parsing, target_parsing: ``[B, H, W, L]`` probabilities (one-hot or soft).
      transforms: ``[B, K, 8]`` target -> source (``geometry.part_transforms``).
      part_masks: ``[B, K, H, W]``.

    Returns:
      ``[B, K, H, W]`` float32 in [0, 1].
    """
    f32 = tf.float32
    warped = geometry.warp(tf.cast(source_parsing, f32)[..., 1:], tf.cast(transforms, f32))  # [B, K, H, W, L-1]
    agree = tf.reduce_sum(warped * tf.cast(target_parsing, f32)[:, None, ..., 1:], axis=-1)
    return tf.cast(part_masks, f32) * tf.clip_by_value(agree, 0.0, 1.0)


# |paint| is clipped below 1 before atanh (paint_residual): a saturated colour
# would otherwise need an infinite pre-activation.
PAINT_CLIP = 0.99


def paint_by_labels(image, source_parsing, target_parsing) -> tf.Tensor:
    """The target parsing painted with the source's mean colour per label (differentiable).

    ``out[p] = sum_l T[p, l] mu_l`` with ``mu_l = sum_q S[q, l] I[q] / sum_q S[q, l]``:
    for one-hot maps, every target pixel of label l gets the mean colour of the
    source's pixels of label l (a label missing in the source gives black, 0).
    Soft maps (H_S's probabilities) give the expected colour, and the gradient
    reaches them (end-to-end training moves H_S through it).

    Args:
      image: [B, H, W, 3] source image in [-1, 1].
      source_parsing, target_parsing: [B, H, W, L] one-hot or probabilities.

    Returns:
      [B, H, W, 3] float32.
    """
    img = tf.cast(image, tf.float32)
    src = tf.cast(source_parsing, tf.float32)
    tgt = tf.cast(target_parsing, tf.float32)
    sums = tf.einsum("bhwl,bhwc->blc", src, img)
    counts = tf.reduce_sum(src, axis=[1, 2])[..., None]
    means = sums / tf.maximum(counts, 1e-6)
    return tf.einsum("bhwl,blc->bhwc", tgt, means)


def _downsample2(x, spatial_axes=(1, 2)):
    """2x2 average pooling of [B, H, W, C] (or [B, K, H, W] with spatial_axes=(2, 3))."""
    if spatial_axes == (1, 2):
        return tf.nn.avg_pool2d(x, 2, 2, "VALID")
    shape = x.shape
    y = tf.reshape(x, [-1, shape[1], shape[2] // 2, 2, shape[3] // 2, 2])
    return tf.reduce_mean(y, axis=[3, 5])


@keras.saving.register_keras_serializable(package="spt_tf")
class ProgressiveAppearanceGenerator(keras.Model):
    """The 256 H_A of the paper, Sec. 4.1: global H_A at half resolution + local enhancer.

    * ``global_generator``: an :class:`AppearanceGenerator` at half resolution;
      its inputs are made inside by 2x2 average pooling (image, parsings,
      poses, part masks) and halving the transforms' translations.
    * Local enhancer (pix2pixHD style, the SPT release's layout): its own two
      encoder levels per stream at full and half resolution (filters 32 and 64
      times ``width_multiplier``), both appearance levels through deformable
      skips (at most ``deformable_levels``); the half-resolution level is
      concatenated with the global decoder's last features, one UpBlock goes to
      full resolution, concatenated with the full-resolution skips, then
      ReLU -> 3x3 conv -> tanh.
    * Output: ``alpha * local + (1 - alpha) * upsample(global)`` (bilinear), with
      ``alpha`` a non-trainable variable set by training (fade-in from 0 to 1);
      it is saved with the model and defaults to 1 (the finished network).
      (The SPT release fades differently: the local encoders' half-resolution
      features replace the global encoder's level 0 by ``alpha``, and the local
      up block reads the global features and level-0 skips only. Fading the
      outputs keeps the global generator a standalone half-resolution H_A.)

    Training phases (the paper's progressive training, Sec. 4.1: global, then
    local only, then all):
    ``variables_for_phase("global" | "local" | "all")`` lists the trainable
    variables to update; ``global_trainable_variables`` and
    ``local_trainable_variables`` partition ``trainable_variables``. The
    global phase can train ``global_generator`` alone on
    ``downsample_inputs(inputs)``.

    ``paint_input`` is passed to the global generator (the local enhancer reads
    the parsing alone); ``paint_residual`` to the global generator and to the
    local enhancer's output, each over the paint at its own resolution;
    ``skip_label_gate`` to the global generator's skips and the local ones.

    Call / returns: as :class:`AppearanceGenerator` at full resolution.
    """

    INPUT_KEYS = AppearanceGenerator.INPUT_KEYS
    LOCAL_BASE_FILTERS = (32, 64)

    def __init__(self, height, width, num_labels=10, width_multiplier=1.0, norm="instance", dropout=0.0,
                 num_downsamples=None, deformable_levels=4, drop_background_channel=True, paint_input=False,
                 paint_residual=False, residual_person_only=False, skip_label_gate=False, **kwargs):  # fmt: skip
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.skip_label_gate = bool(skip_label_gate)
        self.paint_input = bool(paint_input)
        self.paint_residual = bool(paint_residual)
        self.residual_person_only = bool(residual_person_only)
        if self.residual_person_only and not self.paint_residual:
            raise ValueError("model.residual_person_only needs model.paint_residual")
        self.height, self.width = int(height), int(width)
        self.num_labels = int(num_labels)
        self.width_multiplier = float(width_multiplier)
        self.norm = norm
        self.dropout = float(dropout)
        self.deformable_levels = int(deformable_levels)
        self.drop_background_channel = bool(drop_background_channel)
        half_h, half_w = math.ceil(self.height / 2), math.ceil(self.width / 2)
        # Global depth chosen on the half-size image; num_downsamples counts the global's halvings.
        self.num_downsamples = int(
            num_downsamples if num_downsamples is not None else num_downsamples_for(half_h, half_w)
        )
        # Pad at full resolution so the half-size global generator needs no padding of its own.
        self.padded_height = padded_size(self.height, self.num_downsamples + 1)
        self.padded_width = padded_size(self.width, self.num_downsamples + 1)
        self.global_generator = AppearanceGenerator(
            self.padded_height // 2,
            self.padded_width // 2,
            num_labels=self.num_labels,
            width_multiplier=self.width_multiplier,
            norm=norm,
            dropout=self.dropout,
            num_downsamples=self.num_downsamples,
            # A small global generator may have fewer levels than deformable_levels.
            deformable_levels=min(self.deformable_levels, self.num_downsamples + 1),
            drop_background_channel=self.drop_background_channel,
            paint_input=self.paint_input,
            paint_residual=self.paint_residual,
            residual_person_only=self.residual_person_only,
            skip_label_gate=self.skip_label_gate,
            name="global_generator",
        )
        f0, f1 = (scaled_width(b, self.width_multiplier) for b in self.LOCAL_BASE_FILTERS)
        self.local_filters = (f0, f1)
        self.local_deformable_levels = min(2, self.deformable_levels)
        # The release keeps the norm on the local encoders' last block (it feeds the
        # middle of the network, not a bottleneck).
        self.local_appearance_encoder = UNetEncoder([f0, f1], norm, norm_last=True, name="local_appearance_encoder")
        self.local_target_encoder = UNetEncoder([f0, f1], norm, norm_last=True, name="local_target_encoder")
        self.local_skips = [
            DeformableSkip(name=f"local_deformable_skip{i}") for i in range(self.local_deformable_levels)
        ]
        self.local_up = UpBlock(f1, norm, name="local_up")
        self.local_out = keras.layers.Conv2D(3, 3, padding="same", use_bias=True, name="local_conv_out")
        self.local_tanh = keras.layers.Activation("tanh", dtype="float32", name="local_tanh")
        self.upsample = keras.layers.UpSampling2D(2, interpolation="bilinear", dtype="float32", name="upsample")
        self.alpha = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(1.0), trainable=False, name="alpha", dtype="float32"
        )

    def build(self, input_shape):
        b = input_shape["image"][0]
        hp, wp = self.padded_height, self.padded_width
        g = self.global_generator
        n, k, p = self.num_labels, NUM_KEYPOINTS, NUM_PARTS
        g.build({
            "image": (b, hp // 2, wp // 2, 3), "source_parsing": (b, hp // 2, wp // 2, n),
            "source_pose": (b, hp // 2, wp // 2, k), "target_parsing": (b, hp // 2, wp // 2, n),
            "target_pose": (b, hp // 2, wp // 2, k), "transforms": (b, p, 8), "part_masks": (b, p, hp // 2, wp // 2),
        })  # fmt: skip
        app = (b, hp, wp, 3 + g.parsing_channels + k)
        tgt = (b, hp, wp, g.parsing_channels + k)
        self.local_appearance_encoder.build(app)
        self.local_target_encoder.build(tgt)
        sa = self.local_appearance_encoder.compute_output_shape(app)
        st = self.local_target_encoder.compute_output_shape(tgt)
        mid = _concat_shape(g.features_shape(b), sa[1], st[1])
        self.local_up.build(mid)
        self.local_out.build(_concat_shape(self.local_up.compute_output_shape(mid), sa[0], st[0]))

    def compute_output_shape(self, input_shape):
        return (input_shape["image"][0], self.height, self.width, 3)

    # ------------------------------------------------------------------ phases
    def set_alpha(self, value) -> None:
        """Sets the fade-in weight of the local enhancer (0 = global only, 1 = local only)."""
        self.alpha.assign(tf.cast(value, tf.float32))

    @property
    def global_trainable_variables(self) -> list:
        return list(self.global_generator.trainable_variables)

    @property
    def local_trainable_variables(self) -> list:
        global_ids = {id(v) for v in self.global_generator.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in global_ids]

    def variables_for_phase(self, phase: str) -> list:
        """Trainable variables of a training phase: "global", "local" or "all"."""
        if phase == "global":
            return self.global_trainable_variables
        if phase == "local":
            return self.local_trainable_variables
        if phase == "all":
            return list(self.trainable_variables)
        raise ValueError(f"unknown progressive training phase {phase!r}; choose global, local or all")

    # ------------------------------------------------------------------ inputs
    def _pad(self, x, spatial_axes=(1, 2)):
        return _pad_bottom_right(x, self.padded_height - self.height, self.padded_width - self.width, spatial_axes)

    def _padded_inputs(self, inputs):
        out = {}
        for key in self.INPUT_KEYS:
            x = tf.cast(inputs[key], tf.float32)
            if key == "part_masks":
                x = self._pad(x, (2, 3))
            elif key != "transforms":
                x = self._pad(x)
            out[key] = x
        return out

    def _downsample_padded(self, padded):
        half = {}
        for key, x in padded.items():
            if key == "transforms":
                half[key] = geometry.scale_transforms(x, 0.5)
            elif key == "part_masks":
                half[key] = _downsample2(x, (2, 3))
            else:
                half[key] = _downsample2(x)
        return half

    def downsample_inputs(self, inputs) -> dict:
        """Full-resolution input dict -> the global generator's half-resolution inputs."""
        _require(inputs, self.INPUT_KEYS, type(self).__name__)
        return self._downsample_padded(self._padded_inputs(inputs))

    # ------------------------------------------------------------------ call
    def call(self, inputs, training=None):
        _require(inputs, self.INPUT_KEYS, type(self).__name__)
        h, w, n = self.height, self.width, self.num_labels
        expected = {
            "image": (h, w, 3), "source_parsing": (h, w, n), "source_pose": (h, w, NUM_KEYPOINTS),
            "target_parsing": (h, w, n), "target_pose": (h, w, NUM_KEYPOINTS),
            "transforms": (NUM_PARTS, 8), "part_masks": (NUM_PARTS, h, w),
        }  # fmt: skip
        for key, shape in expected.items():
            _check_shape(key, inputs[key], shape, type(self).__name__)
        x = self._padded_inputs(inputs)
        global_image, global_features = self.global_generator(
            self._downsample_padded(x), training=training, return_features=True
        )
        parsing = (lambda s: s[..., 1:]) if self.drop_background_channel else (lambda s: s)
        app = tf.concat([x["image"], parsing(x["source_parsing"]), x["source_pose"]], axis=-1)
        tgt = tf.concat([parsing(x["target_parsing"]), x["target_pose"]], axis=-1)
        skips_a = self.local_appearance_encoder(app, training=training)
        skips_t = self.local_target_encoder(tgt, training=training)
        masks = x["part_masks"]
        if self.skip_label_gate:  # padded at the bottom and right: the transforms' pixels are unchanged
            masks = label_gated_masks(x["source_parsing"], x["target_parsing"], x["transforms"], masks)
        for level in range(self.local_deformable_levels):
            skips_a[level] = self.local_skips[level](skips_a[level], x["transforms"], masks)
        mid = tf.concat([tf.cast(global_features, skips_a[1].dtype), skips_a[1], skips_t[1]], axis=-1)
        up = self.local_up(mid, training=training)
        full = tf.concat([up, skips_a[0], skips_t[0]], axis=-1)
        local_logits = tf.cast(self.local_out(tf.nn.relu(full)), tf.float32)
        if self.paint_residual:
            paint = paint_by_labels(x["image"], x["source_parsing"], x["target_parsing"])
            if self.residual_person_only:
                local_logits = local_logits * (1.0 - x["target_parsing"][..., :1])
            local_logits = local_logits + tf.atanh(tf.clip_by_value(paint, -PAINT_CLIP, PAINT_CLIP))
        local_image = self.local_tanh(local_logits)
        global_up = self.upsample(global_image)  # global_image is [B, Hp/2, Wp/2, 3] float32
        global_up = global_up[:, : self.height, : self.width]
        local_image = local_image[:, : self.height, : self.width]
        alpha = tf.cast(self.alpha, tf.float32)
        return alpha * local_image + (1.0 - alpha) * global_up

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "height": self.height,
            "width": self.width,
            "num_labels": self.num_labels,
            "width_multiplier": self.width_multiplier,
            "norm": self.norm,
            "dropout": self.dropout,
            "num_downsamples": self.num_downsamples,
            "deformable_levels": self.deformable_levels,
            "drop_background_channel": self.drop_background_channel,
            "paint_input": self.paint_input,
            "paint_residual": self.paint_residual,
            "residual_person_only": self.residual_person_only,
            "skip_label_gate": self.skip_label_gate,
        }
