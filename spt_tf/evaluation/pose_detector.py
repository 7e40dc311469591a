"""Evaluation of the pose detector P: PCKh on the real images of a split.

P is trained on the dataset's keypoint heatmaps (``--stage=pose_detector``) and
then used frozen in the pose loss (Eq. 6) and in the evaluator's PCKh of
generated images. Both only mean something when P finds the joints of *real*
images: this measures that, on every image of a split, with the evaluator's
rules (:func:`spt_tf.evaluation.metrics.heatmaps_to_keypoints`, then
:func:`spt_tf.evaluation.metrics.pckh_counts` at threshold 0.5).

It runs at the end of the pose-detector stage on the test split; the result is
the ``validation`` entry of ``WORKDIR/pose_detector_summary.json``, which the
appearance stages read before they switch the pose loss on
(``train.min_pose_pckh``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from spt_tf.data import pipeline
from spt_tf.evaluation import metrics


def evaluate(config, pose_detector, split: str = "test", batch_size: int | None = None,
             max_images: int = 0, threshold: float = 0.5) -> dict:  # fmt: skip
    """P's PCKh on the images of ``split`` against their annotated keypoints.

    Args:
      config: the run config (data.*, eval.batch_size).
      pose_detector: a built :class:`spt_tf.models.PoseDetector` at the config's size.
      split: "test" or "train".
      batch_size: images per batch (default ``eval.batch_size``).
      max_images: the first N images of the split (0 = all).
      threshold: PCKh threshold (fraction of the head size).

    Returns:
      dict: ``split``, ``images``, ``joints`` (visible joints counted), ``pckh``,
      ``threshold``, ``heatmap_threshold``.

    Raises:
      ValueError: the split has no image with a measurable head size.
    """
    predict = tf.function(lambda x: pose_detector(x, training=False), reduce_retracing=True, autograph=False)
    correct = total = count = 0
    for batch in pipeline.split_batches(config, split, batch_size, max_images):
        image, truth = batch["image"], batch["keypoints"].numpy()
        pred = metrics.heatmaps_to_keypoints(predict(image).numpy())
        c, t = metrics.pckh_counts(pred, truth, threshold)
        correct += int(np.sum(c))
        total += int(np.sum(t))
        count += len(truth)
    if total == 0:
        raise ValueError(f"pose detector evaluation: no joint of the {split} split can be judged "
                         "(no image with two visible head keypoints)")  # fmt: skip
    return {
        "split": split,
        "images": count,
        "joints": total,
        "pckh": correct / total,
        "threshold": float(threshold),
        "heatmap_threshold": metrics.POSE_THRESHOLD,
    }
