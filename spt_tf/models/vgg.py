"""VGG16 features to relu2_1 (the paper's Λ, content and style losses, Eqs. 7-8).

``build_vgg_features(weights)`` returns a frozen functional model
``[B, H, W, 3] in [-1, 1] -> [B, H/2, W/2, 128]`` (relu2_1 = ``block2_conv1``
of ``keras.applications.VGG16``, whose conv layers include the ReLU). The
input goes through the Keras 'caffe' preprocessing of VGG16: to [0, 255] RGB,
then RGB -> BGR and the ImageNet channel means subtracted.

Weights:
  * ``"imagenet"``: ``keras.applications.VGG16(include_top=False)`` downloads the
    ImageNet weights (needs a connected machine; offline it raises).
  * a path: a ``.weights.h5`` of this truncated model (``model.save_weights``),
    or a weights file of the full ``keras.applications.VGG16(include_top=False)``
    (the Keras ``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` download, or
    ``save_weights`` of that model).
  * ``""`` / ``None``: random weights, with a loud warning: content and style
    losses then compare random features, not the perceptual ones of the paper.
"""

from __future__ import annotations

import logging
import os

import keras
import tensorflow as tf

_log = logging.getLogger(__name__)

# ImageNet BGR channel means of the Keras 'caffe' preprocessing.
CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)
LAYERS = (
    ("block1_conv1", 64),
    ("block1_conv2", 64),
    ("block1_pool", None),
    ("block2_conv1", 128),
)


@keras.saving.register_keras_serializable(package="spt_tf")
class VGGPreprocess(keras.layers.Layer):
    """[-1, 1] RGB -> Keras VGG 'caffe' input: [0, 255], RGB -> BGR, minus ImageNet means.

    Computed in float32 whatever the global policy (the means are 100+; bfloat16
    would round the result to whole units).
    """

    def __init__(self, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)

    def call(self, images):
        x = (tf.cast(images, tf.float32) + 1.0) * 127.5
        x = x[..., ::-1]
        return x - tf.constant(CAFFE_BGR_MEANS, tf.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return config


def _truncated_vgg(name: str = "vgg16_relu2_1") -> keras.Model:
    inputs = keras.Input((None, None, 3), name="image")
    x = VGGPreprocess(name="preprocess")(inputs)
    for layer_name, filters in LAYERS:
        if filters is None:
            x = keras.layers.MaxPooling2D(2, strides=2, name=layer_name)(x)
        else:
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=layer_name)(x)
    return keras.Model(inputs, x, name=name)


def _copy_from_full_vgg(model: keras.Model, weights: str) -> None:
    full = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(None, None, 3))
    for layer_name, filters in LAYERS:
        if filters is not None:
            model.get_layer(layer_name).set_weights(full.get_layer(layer_name).get_weights())


def build_vgg_features(weights: str | None = "imagenet") -> keras.Model:
    """Frozen VGG16 relu2_1 feature extractor.

    Args:
      weights: "imagenet", a weights file path, or "" / None for random weights
        (logged as a warning). ``config.model.vgg_weights``.

    Returns:
      A non-trainable ``keras.Model``: [B, H, W, 3] in [-1, 1] -> [B, H/2, W/2, 128]
      (compute dtype of the global policy).

    Raises:
      FileNotFoundError: ``weights`` is a path that does not exist.
      ValueError: the file holds weights of neither the truncated nor the full VGG16.
    """
    model = _truncated_vgg()
    if not weights:
        _log.warning(
            "VGG16 (model.vgg_weights) runs with RANDOM weights: the content and style losses "
            "compare random features, not ImageNet VGG features as in the paper. Set "
            "model.vgg_weights to 'imagenet' or to a weights file for real results."
        )
    elif weights == "imagenet":
        _copy_from_full_vgg(model, "imagenet")
    else:
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(f"model.vgg_weights: file {path!r} does not exist")
        try:
            model.load_weights(path)
        except Exception as own_error:  # not this model's file: try the full VGG16's
            try:
                _copy_from_full_vgg(model, path)
            except Exception as full_error:
                raise ValueError(
                    f"model.vgg_weights: {path!r} holds weights of neither the relu2_1 model "
                    f"({own_error}) nor keras.applications.VGG16(include_top=False) ({full_error})"
                ) from full_error
    model.trainable = False
    return model
