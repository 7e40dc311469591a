"""The human parser: image -> logits of the 10 SPT labels, for custom photos.

Not part of SPT (the paper takes its parsing maps from an external LIP-trained
parser). SPT needs a parsing map of every photo it re-poses or re-dresses; for
custom photos without one the project trains this network on the dataset's own
parsing maps (``python train.py --stage=parser``), apart from Algorithm 1.

Architecture (a decision; the generators' U-Net, so depth, padding and widths
follow the same rules, ``spt_tf.models.generators``): one
:class:`~spt_tf.models.generators.UNetEncoder` on the image (3x3 conv, then a
4x4 stride-2 :class:`~spt_tf.models.layers.DownBlock` per level until the
larger side is 4 pixels: 128x64 -> 5 halvings, 256x256 -> 6, 32x16 -> 3), a
:class:`~spt_tf.models.generators.UNetDecoder` back up with the encoder's skip
of every level, then a 3x3 conv to ``num_labels`` logits in float32. Base
filters 64, 128, 256, 512, 512, ... times ``width_multiplier``
(``model.parser_width_multiplier``: the parser has its own width, far below the
generators'). Sides that are not a multiple of ``2 ** num_downsamples`` are
zero-padded at the bottom/right inside and cropped back (256x176 runs as
256x192).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from spt_tf import labels
from spt_tf.models.generators import UNetDecoder, UNetEncoder, _check_shape, _UNetGenerator


@keras.saving.register_keras_serializable(package="spt_tf")
class HumanParser(_UNetGenerator):
    """U-Net semantic segmentation into the SPT labels (``spt_tf.labels.SPT_LABELS``).

    Args:
      height, width: the image size it runs at (the config's ``data.height``,
        ``data.width``).
      num_labels: output channels (10 SPT labels).
      width_multiplier: scales the base filters 64, 128, 256, 512, ...
      norm: a :func:`~spt_tf.models.layers.make_norm` kind.
      dropout: rate on the 3 deepest up blocks (0 disables).
      num_downsamples: encoder halvings (default: the larger side ends at 4 pixels).

    Call:
      image: [B, height, width, 3] float in [-1, 1].
      training: dropout / batch-norm mode.

    Returns:
      [B, height, width, num_labels] float32 logits (softmax over the last axis
      gives label probabilities; their argmax is the label map).
    """

    def __init__(self, height, width, num_labels=labels.NUM_LABELS, width_multiplier=0.5, norm="instance",
                 dropout=0.0, num_downsamples=None, **kwargs):  # fmt: skip
        super().__init__(height, width, num_labels, width_multiplier, norm, dropout, num_downsamples, **kwargs)
        self.encoder = UNetEncoder(self.enc_filters, norm, name="encoder")
        self.decoder = UNetDecoder(self.dec_filters, self.num_labels, norm, self.dropout, name="decoder")
        # Logits leave in float32 under mixed precision (the cross entropy and argmax read them).
        self.logits = keras.layers.Activation("linear", dtype="float32", name="logits")

    def build(self, input_shape):
        shape = (input_shape[0], self.padded_height, self.padded_width, 3)
        self.encoder.build(shape)
        self.decoder.build([tuple(s) for s in self.encoder.compute_output_shape(shape)])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, self.num_labels)

    def call(self, image, training=None):
        _check_shape("image", image, (self.height, self.width, 3), type(self).__name__)
        skips = self.encoder(self._pad(tf.cast(image, tf.float32)), training=training)
        logits, _ = self.decoder(skips, training=training)
        return self.logits(self._crop(logits))


def parse_labels(parser: HumanParser, image, training: bool = False) -> tf.Tensor:
    """The label map of images: argmax of the logits, uint8 ``[B, H, W]``."""
    return tf.cast(tf.argmax(parser(image, training=training), axis=-1), tf.uint8)
