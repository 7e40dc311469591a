"""What the evaluation table measures: its rows and columns, the mask size, the thresholds.

Shared by the evaluation loop (:mod:`spt_tf.evaluation.evaluator`) and the
reporting (:mod:`spt_tf.evaluation.report`); docs/evaluation.md explains each
choice.
"""

from __future__ import annotations

import math

from spt_tf.evaluation import metrics

ROWS = (
    "model", "paint_predicted_parsing", "paint_true_parsing", "copy_source_image", "copy_source_parsing",
    "real_target",
)  # fmt: skip
ROW_TITLES = {
    "model": "model",
    "paint_predicted_parsing": "paint the predicted parsing",
    "paint_true_parsing": "paint the true parsing",
    "copy_source_image": "copy the source image",
    "copy_source_parsing": "copy the source parsing",
    "real_target": "real target (ceiling)",
}
# Rows judged only on whether the image shows the target person (human parser, P).
PERSON_ONLY_ROWS = ("real_target",)
# (json key, markdown header) in table order.
COLUMNS = (
    ("is", "IS"),
    ("mask_is", "mask-IS"),
    ("ssim", "SSIM"),
    ("mask_ssim", "mask-SSIM"),
    ("fid", "FID"),
    ("lpips", "LPIPS"),
    ("l1", "L1"),
    ("miou", "mIoU"),
    ("pixel_accuracy", "pixel acc"),
    ("pckh", "PCKh"),
    ("parser_miou", "parser mIoU"),
)
IMAGE_METRICS = ("is", "mask_is", "ssim", "mask_ssim", "fid", "lpips", "l1", "pckh", "parser_miou")
PARSING_METRICS = ("miou", "pixel_accuracy")

# The field's mask (PG2, Market-1501 at 128 x 64): disc radius 4, closing 5;
# other heights scale both by height / 128 (closing: the nearest odd size >= 1).
FIELD_MASK_HEIGHT = 128
FIELD_MASK_RADIUS = 4.0
FIELD_MASK_CLOSING = 5
POSE_THRESHOLD = metrics.POSE_THRESHOLD
PCKH_THRESHOLD = 0.5


def mask_parameters(height: int) -> tuple[float, int]:
    """(radius, closing) of the evaluation mask at image height ``height``.

    The field's values (radius 4, closing 5) belong to Market-1501's 128-pixel
    height; other sizes scale them by ``height / 128`` so the mask covers the
    same part of the body. Closing is rounded to the nearest odd size (an even
    square would shift the mask by half a pixel), at least 1 (no closing).

    Args:
      height: image height in pixels.

    Returns:
      ``(radius, closing)``: the joint-disc radius (float) and the side of the
      closing square (odd int >= 1), as :func:`metrics.evaluation_masks` takes them.
    """
    s = float(height) / FIELD_MASK_HEIGHT
    closing = int(2 * math.floor((FIELD_MASK_CLOSING * s - 1) / 2 + 0.5) + 1)
    return FIELD_MASK_RADIUS * s, max(1, closing)
