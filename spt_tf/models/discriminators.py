"""PatchGAN discriminator, used as D_S, D_A and D_face (the paper, Sec. 3.2 and 3.3)."""

from __future__ import annotations

import keras
import tensorflow as tf

from spt_tf.models.layers import make_norm


@keras.saving.register_keras_serializable(package="spt_tf")
class PatchDiscriminator(keras.Model):
    """pix2pix / CycleGAN ``NLayerDiscriminator`` (the SPT release's D).

    ``num_layers`` strided 4x4 convs (widths ``filters * min(2^i, 8)``), one
    stride-1 4x4 conv (``filters * min(2^num_layers, 8)``) and a final stride-1
    4x4 conv to one channel; LeakyReLU 0.2 after every conv but the last; norm
    after every conv but the first and the last. With ``num_layers = 3`` the
    receptive field is 70x70. Padding is "same": identical to the release's
    1-pixel padding for the strided convs on even sizes; the stride-1 convs
    keep the size (the release loses one pixel each) so small face crops
    (8x8 with 2 layers) still give a non-empty patch map.

    Args:
      in_channels: channels of the input (checked at call time).
      num_layers: strided layers (``model.d_layers``).
      filters: base width (``model.d_filters``; not scaled by width_multiplier).
      norm: a :func:`~spt_tf.models.layers.make_norm` kind.

    Call:
      x: [B, H, W, in_channels] (images in [-1, 1], maps in [0, 1]).

    Returns:
      [B, ceil(H / 2^num_layers), ceil(W / 2^num_layers), 1] float32 logits.
    """

    def __init__(self, in_channels: int, num_layers: int = 3, filters: int = 64, norm: str = "instance", **kwargs):
        super().__init__(**kwargs)
        self.in_channels = int(in_channels)
        self.num_layers = int(num_layers)
        self.filters = int(filters)
        self.norm = norm
        if self.num_layers < 1:
            raise ValueError(f"model.d_layers must be >= 1, got {self.num_layers}")
        use_bias = norm == "none"  # a bias before a norm with a shift is redundant
        self.convs = [keras.layers.Conv2D(self.filters, 4, strides=2, padding="same", name="conv0")]
        self.norms = [None]
        for i in range(1, self.num_layers + 1):
            stride = 2 if i < self.num_layers else 1
            width = self.filters * min(2**i, 8)
            self.convs.append(
                keras.layers.Conv2D(width, 4, strides=stride, padding="same", use_bias=use_bias, name=f"conv{i}")
            )
            self.norms.append(make_norm(norm, name=f"norm{i}"))
        self.out_conv = keras.layers.Conv2D(1, 4, strides=1, padding="same", name="conv_out")
        self.out_cast = keras.layers.Activation("linear", dtype="float32", name="logits")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for conv, norm in zip(self.convs, self.norms):
            conv.build(shape)
            shape = tuple(conv.compute_output_shape(shape))
            if norm is not None:
                norm.build(shape)
        self.out_conv.build(shape)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for conv in self.convs:
            shape = tuple(conv.compute_output_shape(shape))
        return shape[:-1] + (1,)

    def call(self, x, training=None):
        if x.shape[-1] is not None and x.shape[-1] != self.in_channels:
            raise ValueError(f"{self.name}: input has {x.shape[-1]} channels, built for {self.in_channels}")
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)
            if norm is not None:
                x = norm(x, training=training)
            x = tf.nn.leaky_relu(x, 0.2)
        return self.out_cast(self.out_conv(x))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "in_channels": self.in_channels,
            "num_layers": self.num_layers,
            "filters": self.filters,
            "norm": self.norm,
        }
