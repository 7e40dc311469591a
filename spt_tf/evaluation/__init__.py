"""Evaluation: metrics, the evaluator, and the validation that training stages run.

Training imports nothing from here; whoever starts a training run hands it
:func:`stage_validators` (``train.py``, ``spt_tf.demo_run``).
"""


def stage_validators() -> dict:
    """``{"pose_detector": fn, "parser": fn}``: each ``fn(config, network, split) -> dict``.

    P's PCKh and the human parser's mIoU on the real images of a split, as the
    pose-detector and parser stages report them at their end.
    """
    from spt_tf.evaluation import human_parser, pose_detector

    return {"pose_detector": pose_detector.evaluate, "parser": human_parser.evaluate}
