"""The SPT composite: H_S then H_A, as training and the export module both run it.

H_S (the semantic generator) maps the source parsing and the two poses to the
target parsing; H_A (the appearance generator) renders the source image into a
target parsing and pose. Both read the conditioning tensors of
:func:`spt_tf.geometry.pair_conditioning` (``source_pose``, ``source_mask``,
``target_pose``, ``target_mask``, ``transforms``, ``part_masks``); a training
batch carries the same keys, so one mapping serves both.

Inputs are floats: images in [-1, 1] ``[B, H, W, 3]``, parsings one-hot or
probabilities ``[B, H, W, L]``.
"""

from __future__ import annotations

import tensorflow as tf

from spt_tf import geometry


def hs_inputs(parsing, source_pose, source_mask, target_pose, target_mask) -> dict:
    """The input dict of the semantic generator H_S."""
    return {
        "source_parsing": parsing,
        "source_pose": source_pose,
        "source_mask": source_mask,
        "target_pose": target_pose,
        "target_mask": target_mask,
    }


def ha_inputs(image, source_parsing, source_pose, target_parsing, target_pose, transforms, part_masks) -> dict:
    """The input dict of the appearance generator H_A."""
    return {
        "image": image,
        "source_parsing": source_parsing,
        "source_pose": source_pose,
        "target_parsing": target_parsing,
        "target_pose": target_pose,
        "transforms": transforms,
        "part_masks": part_masks,
    }


def hard(probs) -> tf.Tensor:
    """Probabilities ``[..., L]`` -> one-hot of the argmax (no gradient)."""
    return tf.one_hot(tf.argmax(probs, -1), tf.shape(probs)[-1], dtype=tf.float32)


def predict_parsing(hs, source_parsing, cond, training=False) -> tf.Tensor:
    """H_S: the source parsing ``[B, H, W, L]`` in the target pose of ``cond`` (probabilities)."""
    return hs(
        hs_inputs(source_parsing, cond["source_pose"], cond["source_mask"], cond["target_pose"], cond["target_mask"]),
        training=training,
    )  # fmt: skip


def render(ha, image, source_parsing, target_parsing, cond, training=False) -> tf.Tensor:
    """H_A: ``image`` with ``source_parsing`` rendered into ``target_parsing`` and ``cond``'s target pose."""
    return ha(
        ha_inputs(image, source_parsing, cond["source_pose"], target_parsing, cond["target_pose"],
                  cond["transforms"], cond["part_masks"]),
        training=training,
    )  # fmt: skip


def to_uint8(images) -> tf.Tensor:
    """[-1, 1] floats -> uint8 (rounded, clipped)."""
    return tf.cast(tf.clip_by_value(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5), 0, 255), tf.uint8)


def from_uint8(images) -> tf.Tensor:
    """uint8 -> [-1, 1] floats."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


class PoseTransfer(tf.Module):
    """H_S + H_A at inference, on uint8 images and label maps (what the export signatures run).

    Args:
      hs, ha: the two generators (built).
      config: the run config (resolution, labels, geometry parameters, ablation).
    """

    def __init__(self, hs, ha, config, name="pose_transfer"):
        super().__init__(name=name)
        self.hs, self.ha = hs, ha
        self.height, self.width = int(config.data.height), int(config.data.width)
        self.num_labels = int(config.model.num_labels)
        self.sigma, self.radius = float(config.data.sigma), float(config.data.mask_radius)
        # The Baseline ablation trains H_A without parsings: it sees zeros there.
        self.no_parsing = config.train.ablation == "baseline"

    def conditioning(self, source_keypoints, target_keypoints) -> dict:
        return geometry.pair_conditioning(source_keypoints, target_keypoints, self.height, self.width,
                                          self.sigma, self.radius)  # fmt: skip

    def parsing_probabilities(self, parsing, cond) -> tf.Tensor:
        """u8 source labels ``[B, H, W]`` -> H_S's target probabilities ``[B, H, W, L]``."""
        return predict_parsing(self.hs, geometry.one_hot_parsing(parsing, self.num_labels), cond)

    def generate(self, image, parsing, target_parsing, cond) -> tf.Tensor:
        """u8 image, u8 source labels, one-hot target parsing -> u8 image ``[B, H, W, 3]``."""
        s = geometry.one_hot_parsing(parsing, self.num_labels)
        if self.no_parsing:
            s = tf.zeros_like(s)
            target_parsing = tf.zeros_like(s)
        y = render(self.ha, from_uint8(image), s, target_parsing, cond)
        return to_uint8(y)

    def pose_transfer(self, image, parsing, source_keypoints, target_keypoints) -> dict:
        """-> ``{"image": u8[B,H,W,3], "parsing": u8[B,H,W]}``: H_S, its argmax, then H_A."""
        cond = self.conditioning(source_keypoints, target_keypoints)
        probs = self.parsing_probabilities(parsing, cond)
        return {"image": self.generate(image, parsing, hard(probs), cond),
                "parsing": tf.cast(tf.argmax(probs, -1), tf.uint8)}  # fmt: skip

    def transform_parsing(self, parsing, source_keypoints, target_keypoints) -> dict:
        """-> ``{"parsing": u8[B,H,W]}``: H_S alone."""
        probs = self.parsing_probabilities(parsing, self.conditioning(source_keypoints, target_keypoints))
        return {"parsing": tf.cast(tf.argmax(probs, -1), tf.uint8)}

    def render(self, image, parsing, source_keypoints, target_keypoints, target_parsing) -> dict:
        """-> ``{"image": u8[B,H,W,3]}``: H_A on an explicit u8 target parsing."""
        cond = self.conditioning(source_keypoints, target_keypoints)
        onehot = geometry.one_hot_parsing(target_parsing, self.num_labels)
        return {"image": self.generate(image, parsing, onehot, cond)}
