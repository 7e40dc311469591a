"""The SPT networks and their builders (``docs/design.md``; the paper, Sec. 3.2-3.3).

Builders take an ``ml_collections`` config (``configs/base.py``: ``model.*``,
``data.height`` / ``data.width``):

* :func:`build_semantic_generator` -> H_S (:class:`SemanticGenerator`)
* :func:`build_appearance_generator` -> H_A (:class:`AppearanceGenerator`, or
  :class:`ProgressiveAppearanceGenerator` with ``model.progressive``)
* :func:`build_discriminator` -> :class:`PatchDiscriminator` (D_S, D_A, D_face)
* :func:`build_pose_detector` -> P (:class:`PoseDetector`)
* :func:`build_human_parser` -> the human parser (:class:`HumanParser`; the
  ``parser`` stage, apart from Algorithm 1)
* :func:`build_vgg` -> frozen VGG16 relu2_1 (Λ)
* :func:`build_models` -> all of them but VGG, in a dict.

Networks are built on first call; :func:`build_network` creates the variables
from :func:`input_shapes` without tracing, :func:`output_shapes` gives the
output shape without computing anything.
"""

from __future__ import annotations

import keras

from spt_tf import geometry
from spt_tf.models.discriminators import PatchDiscriminator
from spt_tf.models.generators import (
    AppearanceGenerator,
    ProgressiveAppearanceGenerator,
    SemanticGenerator,
    UNetDecoder,
    UNetEncoder,
)
from spt_tf.models.human_parser import HumanParser
from spt_tf.models.layers import (
    DeformableSkip,
    DownBlock,
    InstanceNormSingle,
    ResidualBlock,
    UpBlock,
    make_norm,
)
from spt_tf.models.pose_detector import PoseDetector
from spt_tf.models.vgg import VGGPreprocess, build_vgg_features

__all__ = [
    "AppearanceGenerator",
    "DeformableSkip",
    "DownBlock",
    "HumanParser",
    "InstanceNormSingle",
    "PatchDiscriminator",
    "PoseDetector",
    "ProgressiveAppearanceGenerator",
    "ResidualBlock",
    "SemanticGenerator",
    "UNetDecoder",
    "UNetEncoder",
    "UpBlock",
    "VGGPreprocess",
    "build_appearance_generator",
    "build_discriminator",
    "build_models",
    "build_human_parser",
    "build_network",
    "build_pose_detector",
    "build_semantic_generator",
    "build_vgg",
    "discriminator_channels",
    "input_shapes",
    "make_norm",
    "output_shapes",
]


def build_semantic_generator(config) -> SemanticGenerator:
    """H_S at ``data.height x data.width`` (fields ``model.num_labels, width_multiplier, norm, dropout``)."""
    m = config.model
    return SemanticGenerator(
        config.data.height,
        config.data.width,
        num_labels=m.num_labels,
        width_multiplier=m.width_multiplier,
        norm=m.norm,
        dropout=m.dropout,
    )


def build_appearance_generator(config) -> AppearanceGenerator | ProgressiveAppearanceGenerator:
    """H_A; the progressive global + local generator when ``model.progressive``."""
    m = config.model
    cls = ProgressiveAppearanceGenerator if m.progressive else AppearanceGenerator
    return cls(
        config.data.height,
        config.data.width,
        num_labels=m.num_labels,
        width_multiplier=m.width_multiplier,
        norm=m.norm,
        dropout=m.dropout,
        deformable_levels=m.deformable_levels,
        drop_background_channel=m.drop_background_channel,
        paint_input=m.paint_input,
        paint_residual=m.paint_residual,
        residual_person_only=m.residual_person_only,
        skip_label_gate=m.skip_label_gate,
    )


def build_discriminator(config, in_channels: int, name: str | None = None) -> PatchDiscriminator:
    """PatchGAN with ``model.d_layers`` strided layers of base width ``model.d_filters``.

    ``name`` defaults to a unique "patch_discriminator[_N]".
    """
    m = config.model
    return PatchDiscriminator(in_channels, num_layers=m.d_layers, filters=m.d_filters, norm=m.norm, name=name)


def build_pose_detector(config) -> PoseDetector:
    """P with ``model.pose_blocks`` residual blocks of base width ``model.pose_filters``."""
    m = config.model
    return PoseDetector(filters=m.pose_filters, num_blocks=m.pose_blocks, norm=m.norm)


def build_human_parser(config) -> HumanParser:
    """The human parser at ``data.height x data.width`` (``model.parser_width_multiplier``, labels, norm)."""
    m = config.model
    return HumanParser(
        config.data.height,
        config.data.width,
        num_labels=m.num_labels,
        width_multiplier=m.parser_width_multiplier,
        norm=m.norm,
    )


def build_vgg(config) -> keras.Model:
    """Frozen VGG16 relu2_1 with ``model.vgg_weights`` ("imagenet", a file, or "" = random, logged)."""
    return build_vgg_features(config.model.vgg_weights)


def discriminator_channels(config) -> dict[str, int]:
    """Input channels of D_S (parsing ⊕ target pose), D_A (image ⊕ parsing), D_face (crop)."""
    num_labels = config.model.num_labels
    return {
        "semantic_discriminator": num_labels + geometry.NUM_KEYPOINTS,
        "appearance_discriminator": 3 + num_labels,
        "face_discriminator": 3,
    }


def build_models(config) -> dict[str, keras.Model]:
    """Every trainable network of a config (VGG apart: see :func:`build_vgg`).

    Keys: ``semantic_generator``, ``appearance_generator``,
    ``semantic_discriminator``, ``appearance_discriminator``,
    ``face_discriminator`` (only when ``model.face_crop_size > 0``), ``pose_detector``,
    ``human_parser``.
    """
    channels = discriminator_channels(config)
    models = {
        "semantic_generator": build_semantic_generator(config),
        "appearance_generator": build_appearance_generator(config),
        "semantic_discriminator": build_discriminator(
            config, channels["semantic_discriminator"], name="semantic_discriminator"
        ),
        "appearance_discriminator": build_discriminator(
            config, channels["appearance_discriminator"], name="appearance_discriminator"
        ),
        "pose_detector": build_pose_detector(config),
        "human_parser": build_human_parser(config),
    }
    if config.model.face_crop_size > 0:
        models["face_discriminator"] = build_discriminator(
            config, channels["face_discriminator"], name="face_discriminator"
        )
    return models


def input_shapes(config) -> dict[str, object]:
    """Per-example input shapes (no batch axis) of each network of :func:`build_models` and ``vgg``."""
    h, w = config.data.height, config.data.width
    n, k, p = config.model.num_labels, geometry.NUM_KEYPOINTS, geometry.NUM_PARTS
    channels = discriminator_channels(config)
    face = config.model.face_crop_size
    return {
        "semantic_generator": {
            "source_parsing": (h, w, n), "source_pose": (h, w, k), "source_mask": (h, w, 1),
            "target_pose": (h, w, k), "target_mask": (h, w, 1),
        },
        "appearance_generator": {
            "image": (h, w, 3), "source_parsing": (h, w, n), "source_pose": (h, w, k),
            "target_parsing": (h, w, n), "target_pose": (h, w, k),
            "transforms": (p, 8), "part_masks": (p, h, w),
        },
        "semantic_discriminator": (h, w, channels["semantic_discriminator"]),
        "appearance_discriminator": (h, w, channels["appearance_discriminator"]),
        "face_discriminator": (face, face, channels["face_discriminator"]),
        "pose_detector": (h, w, 3),
        "human_parser": (h, w, 3),
        "vgg": (h, w, 3),
    }  # fmt: skip


def _batched(shapes, batch_size):
    if isinstance(shapes, dict):
        return {key: (batch_size, *shape) for key, shape in shapes.items()}
    return (batch_size, *shapes)


def build_network(model: keras.Model, shapes, batch_size: int | None = None) -> keras.Model:
    """Creates ``model``'s variables for inputs of ``shapes`` (no tracing, no computation).

    Args:
      model: a network of this package.
      shapes: its entry of :func:`input_shapes` (a shape tuple or a dict of them).
      batch_size: static batch size (None = unknown).

    Returns:
      ``model``, built.
    """
    if not model.built:
        model.build(_batched(shapes, batch_size))
    return model


def output_shapes(model: keras.Model, shapes, batch_size: int | None = None):
    """Output shape of ``model`` for inputs of ``shapes`` (builds it; no tracing, no computation).

    Every network here implements ``compute_output_shape``; the tests check it
    against real calls.
    """
    batched = _batched(shapes, batch_size)
    build_network(model, shapes, batch_size)
    return tuple(model.compute_output_shape(batched))
