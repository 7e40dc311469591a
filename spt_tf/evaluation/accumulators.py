"""Per-row running totals of the evaluation table, updated batch by batch.

Only sums and counts grow with the batches (plus the pool features while
they are few, :class:`FeatureStatistics`), never the images.
"""

from __future__ import annotations

import numpy as np

from spt_tf.evaluation import metrics
from spt_tf.evaluation.feature_statistics import FeatureStatistics


class Mean:
    """Mean of a stream of per-example values; NaNs counted, not averaged.

    Attributes:
      total, count: sum and number of the non-NaN values.
      nan: the number of NaN values seen.
    """

    def __init__(self):
        self.total, self.count, self.nan = 0.0, 0, 0

    def update(self, values) -> None:
        """Adds a batch of values (any shape)."""
        v = np.asarray(values, np.float64).ravel()
        bad = np.isnan(v)
        self.nan += int(bad.sum())
        self.total += float(v[~bad].sum())
        self.count += int((~bad).sum())

    def value(self) -> float | None:
        """The mean of the non-NaN values, or None when there were none."""
        return self.total / self.count if self.count else None


class ImageRow:
    """Accumulators of one table row judged on images (model, baselines, real targets).

    Args:
      with_inception: keep IS, mask-IS and the pool features for FID.
      with_pose: count PCKh hits of the pose detector P.
      num_pairs: the number of pairs (the IS splits need it up front).
      splits: IS splits.
      with_parser: keep the human parser's confusion matrix.
      num_labels: parsing labels.
      person_only: the row is judged only on showing the target person
        (P, human parser): no SSIM / L1.
      with_lpips: keep the mean LPIPS distance to the real targets.

    Attributes:
      ssim, mask_ssim, l1: :class:`Mean` of the per-pair values.
      lpips: :class:`Mean` of the per-pair LPIPS distances, or None.
      inception_score, mask_inception_score: :class:`metrics.StreamingInceptionScore`,
        or None without Inception.
      features: :class:`FeatureStatistics` of the pool features, or None.
      pck: ``[hits, total]`` of PCKh, or None without P.
      parser_confusion: [L, L] confusion of the human parser's labels of the
        images against the true target parsing, or None without a parser.
    """

    def __init__(self, with_inception: bool, with_pose: bool, num_pairs: int, splits: int,
                 with_parser: bool = False, num_labels: int = 10, person_only: bool = False,
                 with_lpips: bool = False):  # fmt: skip
        self.person_only = bool(person_only)
        self.ssim, self.mask_ssim, self.l1 = Mean(), Mean(), Mean()
        self.lpips = Mean() if with_lpips and not self.person_only else None
        # IS and mask-IS as running sums (the logits are not kept: 4 KB a pair each).
        self.inception_score = self.mask_inception_score = None
        if with_inception:
            self.inception_score = metrics.StreamingInceptionScore(num_pairs, splits)
            self.mask_inception_score = metrics.StreamingInceptionScore(num_pairs, splits)
        self.features = FeatureStatistics() if with_inception else None
        self.pck = [0, 0] if with_pose else None
        self.parser_confusion = np.zeros((num_labels, num_labels), np.int64) if with_parser else None
