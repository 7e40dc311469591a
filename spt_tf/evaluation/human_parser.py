"""Evaluation of the human parser: mIoU and pixel accuracy against the true parsing.

The parser (``--stage=parser``) predicts the label map of each image of a split
(:func:`spt_tf.data.pipeline.parsing_dataset`, at the config's resolution) by
the argmax of its logits; one confusion matrix over every pixel of the split
gives the mean IoU (over the labels present in the truth or the prediction,
:func:`spt_tf.evaluation.metrics.miou_from_confusion`, the same code as H_S's
mIoU in the evaluator), the pixel accuracy and the IoU per label. The trivial
predictor "every pixel is background" is measured on the same pixels, the floor
any useful parser must beat.

It runs at the end of the parser stage, on the whole test split
(``spt_tf.training.loop``): the result is the ``validation`` entry of
``WORKDIR/parser_summary.json`` and TensorBoard's ``validation/parser_*``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from spt_tf import labels
from spt_tf.data import pipeline
from spt_tf.evaluation import metrics


def evaluate(config, parser, split: str = "test", batch_size: int | None = None, max_images: int = 0) -> dict:
    """The parser's mIoU / pixel accuracy on ``split`` against the dataset's parsing maps.

    Args:
      config: the run config (data.*, model.num_labels, eval.batch_size).
      parser: a built :class:`spt_tf.models.HumanParser` at ``data.height x data.width``.
      split: "test" or "train".
      batch_size: images per batch (default ``eval.batch_size``).
      max_images: evaluate the first N images of the split (0 = all).

    Returns:
      dict: ``split``, ``images``, ``pixels``, ``miou``, ``pixel_accuracy``,
      ``iou_per_label`` (label name -> IoU, None for a label absent from truth
      and prediction), ``all_background`` (``miou``, ``pixel_accuracy`` of the
      predictor that says background everywhere).
    """
    num_labels = int(config.model.num_labels)
    predict = tf.function(lambda x: tf.argmax(parser(x, training=False), axis=-1, output_type=tf.int32),
                          reduce_retracing=True, autograph=False)  # fmt: skip
    conf = np.zeros((num_labels, num_labels), np.int64)
    background = np.zeros_like(conf)
    count = 0
    for batch in pipeline.split_batches(config, split, batch_size, max_images):
        image, truth = batch["image"], batch["parsing"].numpy()
        pred = predict(image).numpy()
        conf += metrics.parsing_confusion(pred, truth, num_labels)
        background += metrics.parsing_confusion(np.zeros_like(truth), truth, num_labels)
        count += len(truth)
    if count == 0:
        raise ValueError(f"parser evaluation: the {split} split has no images")
    iou = metrics.iou_per_label(conf)
    names = labels.SPT_LABELS if num_labels == labels.NUM_LABELS else [str(i) for i in range(num_labels)]
    return {
        "split": split,
        "images": count,
        "pixels": int(conf.sum()),
        "miou": metrics.miou_from_confusion(conf),
        "pixel_accuracy": metrics.pixel_accuracy_from_confusion(conf),
        "iou_per_label": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "all_background": {
            "miou": metrics.miou_from_confusion(background),
            "pixel_accuracy": metrics.pixel_accuracy_from_confusion(background),
        },
    }
