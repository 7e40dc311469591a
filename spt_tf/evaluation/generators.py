"""The evaluated networks, loaded through :mod:`spt_tf.predictor`.

:class:`Generator` runs H_S + H_A (and P, when trained) on the evaluator's
batches; :func:`checkpoint_generator` and :func:`saved_model_generator` load
one from a training workdir or an exported SavedModel;
:func:`restore_human_parser` loads the human parser that judges the
generated images.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from absl import logging

from spt_tf import predictor as predictor_lib
from spt_tf import versions
from spt_tf.evaluation import metrics
from spt_tf.networks import IncompleteCheckpointError


class Generator:
    """A :class:`spt_tf.predictor.Predictor` on the evaluator's batches (tensors in, tensors out).

    Attributes:
      predictor: the wrapped :class:`spt_tf.predictor.Predictor`.
      kind: ``"checkpoint"`` or ``"saved_model"``; path: what was loaded.
      pose_trained: the trained pose detector P is there (a workdir whose
        pose_detector stage ran); PCKh is computed only then.
      pose_note: why there is no PCKh, or None.
    """

    def __init__(self, model: predictor_lib.Predictor, pose_note: str | None = None):
        self.predictor = model
        self.kind, self.path = model.kind, model.source
        self.pose_trained = model.can_detect
        self.pose_note = pose_note

    def __call__(self, image, parsing, source_kp, target_kp, target_parsing=None) -> dict:
        """Generated ``{"image": uint8 [B, H, W, 3], "parsing": [B, H, W]}`` tensors.

        Args:
          image: uint8 source images; parsing: source label maps;
          source_kp, target_kp: [B, 18, 2] keypoints.
          target_parsing: when given (the TS-GT ablation), H_A renders this
            map instead of H_S's prediction; ``"parsing"`` is still H_S's.
        """
        args = {"image": np.asarray(image), "parsing": np.asarray(parsing),
                "source_keypoints": np.asarray(source_kp), "target_keypoints": np.asarray(target_kp)}  # fmt: skip
        if target_parsing is None:
            out = self.predictor.pose_transfer(**args)
        else:
            out = {"image": self.predictor.render(target_parsing=np.asarray(target_parsing), **args),
                   "parsing": self.predictor.transform_parsing(args["parsing"], args["source_keypoints"],
                                                               args["target_keypoints"])}  # fmt: skip
        return {k: tf.constant(v) for k, v in out.items()}

    def detect(self, images_u8) -> np.ndarray:
        """P's keypoints [B, 18, 2] on uint8 images."""
        return metrics.heatmaps_to_keypoints(self.predictor.detect_heatmaps(np.asarray(images_u8)))


def checkpoint_generator(config, workdir: str | None, checkpoint: str | None = None) -> Generator:
    """H_S + H_A from a training checkpoint (the workdir's latest, or ``checkpoint``), with P when trained.

    Args:
      config: the run config.
      workdir: the training workdir, or None with ``checkpoint``.
      checkpoint: an explicit checkpoint path (overrides the workdir's latest).

    Returns:
      A :class:`Generator`; without a trained P its ``pose_note`` says so (logged).

    Raises:
      IncompleteCheckpointError: the checkpoint lacks weights of H_S or H_A.
    """
    try:
        model = predictor_lib.from_workdir(workdir, config, checkpoint)
    except predictor_lib.CheckpointMismatchError as e:
        raise IncompleteCheckpointError(str(e)) from None
    note = None
    if not model.can_detect:
        run_dir = workdir or os.path.dirname(os.path.dirname(os.path.abspath(model.source)))
        note = f"PCKh: no pose_detector checkpoint in {run_dir}: P is untrained, so PCKh is not computed"
        logging.warning("evaluate: %s", note)
    return Generator(model, note)


def saved_model_generator(config, path: str) -> Generator:
    """The exported SavedModel (a version directory, or the newest under a base). No pose detector.

    Args:
      config: the run config (its data.height x data.width must be the SavedModel's).
      path: a SavedModel version directory or an export base folder.

    Returns:
      A :class:`Generator` whose ``pose_note`` says why there is no PCKh.

    Raises:
      FileNotFoundError: no SavedModel there; ValueError: its size differs from the config's.
    """
    model = predictor_lib.from_saved_model(versions.resolve_saved_model(path))
    want = (int(config.data.height), int(config.data.width))
    if model.size != want:
        raise ValueError(
            f"{model.source}: SavedModel images are {model.height}x{model.width}, the config's "
            f"data.height x data.width is {want[0]}x{want[1]}; pass the config it was exported with"
        )
    return Generator(
        model,
        "PCKh: not available with a SavedModel (it holds no pose detector P); evaluate a checkpoint",
    )


def restore_human_parser(config, workdir: str):
    """The trained human parser of a training workdir, as a labels function; (None, why) without one.

    Args:
      config: the run config.
      workdir: a training workdir whose parser stage ran.

    Returns:
      ``(fn, path)``: ``fn`` maps uint8 images [B, H, W, 3] to uint8 labels [B, H, W];
      or ``(None, reason)`` when ``WORKDIR/parser`` holds no checkpoint.

    Raises:
      IncompleteCheckpointError: the parser checkpoint cannot be restored.
    """
    try:
        parser = predictor_lib.load_parser(workdir, config)
    except predictor_lib.NoParserError as e:
        return None, f"parser mIoU: {e}"
    except predictor_lib.CheckpointMismatchError as e:
        raise IncompleteCheckpointError(str(e)) from None
    return parser.parse_labels, parser.source
