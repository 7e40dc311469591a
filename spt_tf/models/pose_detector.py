"""Pose detector P: image -> 18 keypoint heatmaps (Eq. 6 of the paper).

The release used a CycleGAN ResNet generator (3 -> 18 channels, tanh) trained
on the sigma = 6 heatmaps, weights unreleased. Here: the same shape at a
configurable size (``model.pose_blocks`` residual blocks at 1/4 resolution,
``model.pose_filters`` base width), zero padding (XLA-friendly, where CycleGAN
reflects) and a **sigmoid** output, since the targets are heatmaps in [0, 1]
(tanh would spend half its range on values no target has). Its training loss
lives in ``spt_tf.losses``; used frozen inside the pose loss.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spt_tf import geometry
from spt_tf.models.layers import ResidualBlock, make_norm


@keras.saving.register_keras_serializable(package="spt_tf")
class PoseDetector(keras.Model):
    """ResNet heatmap regressor.

    7x7 conv (f) -> two 3x3 stride-2 convs (2f, 4f) -> ``num_blocks`` residual
    blocks at 1/4 resolution -> two 3x3 stride-2 transposed convs (2f, f) ->
    7x7 conv to 18 channels -> sigmoid; norm + ReLU after every conv but the last.

    Args:
      filters: base width f.
      num_blocks: residual blocks.
      norm: a :func:`~spt_tf.models.layers.make_norm` kind.
      num_keypoints: output channels (18, COCO-18).

    Call:
      image: [B, H, W, 3] in [-1, 1], H and W multiples of 4.

    Returns:
      [B, H, W, num_keypoints] float32 heatmaps in [0, 1].
    """

    def __init__(
        self,
        filters: int = 32,
        num_blocks: int = 6,
        norm: str = "instance",
        num_keypoints: int = geometry.NUM_KEYPOINTS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.num_blocks = int(num_blocks)
        self.norm = norm
        self.num_keypoints = int(num_keypoints)
        f = self.filters
        use_bias = norm == "none"
        self.stem = [
            keras.layers.Conv2D(f, 7, padding="same", use_bias=use_bias, name="conv_in"),
            keras.layers.Conv2D(2 * f, 3, strides=2, padding="same", use_bias=use_bias, name="down1"),
            keras.layers.Conv2D(4 * f, 3, strides=2, padding="same", use_bias=use_bias, name="down2"),
        ]
        self.stem_norms = [make_norm(norm, name=f"norm_in{i}") for i in range(3)]
        self.blocks = [ResidualBlock(4 * f, norm, name=f"res{i}") for i in range(self.num_blocks)]
        self.head = [
            keras.layers.Conv2DTranspose(2 * f, 3, strides=2, padding="same", use_bias=use_bias, name="up1"),
            keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", use_bias=use_bias, name="up2"),
        ]
        self.head_norms = [make_norm(norm, name=f"norm_up{i}") for i in range(2)]
        self.out_conv = keras.layers.Conv2D(self.num_keypoints, 7, padding="same", name="conv_out")
        self.sigmoid = keras.layers.Activation("sigmoid", dtype="float32", name="sigmoid")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.stem, self.stem_norms):
            conv.build(shape)
            shape = tuple(conv.compute_output_shape(shape))
            norm.build(shape)
        for block in self.blocks:
            block.build(shape)
        for conv, norm in zip(self.head, self.head_norms):
            conv.build(shape)
            shape = tuple(conv.compute_output_shape(shape))
            norm.build(shape)
        self.out_conv.build(shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_keypoints,)

    def call(self, image, training=None):
        h, w = image.shape[1], image.shape[2]
        if image.shape[-1] != 3 or (h is not None and h % 4) or (w is not None and w % 4):
            raise ValueError(f"{self.name}: expects [B, H, W, 3] with H, W multiples of 4, got {image.shape}")
        x = image
        for conv, norm in zip(self.stem, self.stem_norms):
            x = tf.nn.relu(norm(conv(x), training=training))
        for block in self.blocks:
            x = block(x, training=training)
        for conv, norm in zip(self.head, self.head_norms):
            x = tf.nn.relu(norm(conv(x), training=training))
        return self.sigmoid(self.out_conv(x))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "filters": self.filters,
            "num_blocks": self.num_blocks,
            "norm": self.norm,
            "num_keypoints": self.num_keypoints,
        }
