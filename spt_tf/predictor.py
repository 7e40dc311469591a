"""The predictor: one interface over an exported SavedModel and a training workdir.

The evaluator, the apps and the studio all run models through it. Both kinds
expose the export signatures (``spt_tf.export.module``), at the model's
resolution, on numpy arrays:

* ``pose_transfer(image, parsing, source_keypoints, target_keypoints)``
  -> ``{"image": u8[B,H,W,3], "parsing": u8[B,H,W]}`` (H_S then H_A);
* ``transform_parsing(parsing, source_keypoints, target_keypoints)`` -> ``u8[B,H,W]``;
* ``render(image, parsing, source_keypoints, target_keypoints, target_parsing)``
  -> ``u8[B,H,W,3]`` (H_A on a given target parsing: texture transfer, edits).

A workdir is wrapped in :class:`spt_tf.export.module.SPTExportModule`, the very
module the SavedModel is written from, so both paths run the same graph. Only a
workdir also holds the pose detector P (:meth:`Predictor.detect_heatmaps`) and,
once its ``parser`` stage ran, the human parser (:meth:`Predictor.parse_labels`;
:func:`load_parser` loads the parser of any workdir alone, e.g. beside a SavedModel).
Networks are built and restored by :mod:`spt_tf.networks`.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from absl import logging

from spt_tf import composite, config_files, geometry, networks, versions
from spt_tf.export import module as export_lib

NUM_KEYPOINTS = geometry.NUM_KEYPOINTS


class ModelError(ValueError):
    """The model directory, workdir or config cannot be used."""


class CheckpointMismatchError(ModelError):
    """A checkpoint does not hold every weight of the networks the config builds."""


class NoParserError(ModelError):
    """The workdir's parser stage has not run: there is no human parser to load."""


# ---------------------------------------------------------------- locating models


def resolve_saved_model(path: str) -> str:
    """A SavedModel version directory, or the newest numbered version under a base directory.

    Raises:
      ModelError: ``path`` is neither (:func:`spt_tf.versions.resolve_saved_model`).
    """
    try:
        return versions.resolve_saved_model(path)
    except versions.NoSavedModelError as e:
        raise ModelError(str(e)) from None


def load_config(spec: str):
    """A config spec (``file.py[:ARG]`` or a workdir's ``config.json``); ModelError when unusable."""
    try:
        return config_files.load_config(spec)
    except config_files.ConfigFileError as e:
        raise ModelError(str(e)) from None


# ---------------------------------------------------------------- predictor


class Predictor:
    """The export signatures of one model, on numpy arrays at the model's resolution.

    Attributes:
      kind: ``"saved_model"`` or ``"checkpoint"``.
      source: the SavedModel version directory or the checkpoint path.
      height, width: the model's resolution.
    """

    def __init__(self, kind: str, source: str, fns: dict, height: int, width: int, detector=None,
                 parser: Parser | None = None, parser_missing: str | None = None):  # fmt: skip
        self.kind, self.source = kind, source
        self._fns = fns
        self.height, self.width = int(height), int(width)
        self._detector = detector  # callable: u8 images -> heatmaps, or None
        self._parser = parser
        # Why there is no parser (names the checkpoint folder and the command that trains one).
        self._parser_missing = parser_missing or (
            f"{source}: human parsing needs the parser network, which only a training workdir holds: give "
            "--parser_workdir W (a workdir whose parser stage ran: python train.py --stage=parser ...), "
            "or a parsing map (--parsing / --lip_parsing)"
        )

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def can_detect(self) -> bool:
        return self._detector is not None

    @property
    def can_parse(self) -> bool:
        return self._parser is not None

    @property
    def parser(self) -> Parser:
        """The workdir's human parser (:class:`Parser`). Raises ModelError when there is none."""
        if self._parser is None:
            raise ModelError(self._parser_missing)
        return self._parser

    def _check(self, name, array, tail):
        array = np.asarray(array)
        want = (self.height, self.width) + tail
        if array.ndim != len(want) + 1 or array.shape[1:] != want:
            raise ValueError(f"{name} must be [B, {', '.join(map(str, want))}] for this model, got {array.shape}")
        return array

    def _call(self, name, **arrays):
        b = {k: np.asarray(v).shape[0] for k, v in arrays.items()}
        if len(set(b.values())) != 1:
            raise ValueError(f"{name}: batch sizes differ: {b}")
        tensors = {}
        for k, v in arrays.items():
            if k.endswith("keypoints"):
                v = np.asarray(v, np.float32)
                if v.shape[1:] != (NUM_KEYPOINTS, 2):
                    raise ValueError(f"{k} must be [B, 18, 2], got {v.shape}")
            elif k == "image":
                v = self._check(k, v, (3,)).astype(np.uint8)
            else:
                v = self._check(k, v, ()).astype(np.uint8)
            tensors[k] = tf.constant(v)
        out = self._fns[name](**tensors)
        return {k: v.numpy() for k, v in out.items()}

    def pose_transfer(self, image, parsing, source_keypoints, target_keypoints) -> dict[str, np.ndarray]:
        """u8 ``[B,H,W,3]``, u8 ``[B,H,W]``, f32 ``[B,18,2]`` x2 -> ``{"image", "parsing"}``."""
        return self._call("serving_default", image=image, parsing=parsing, source_keypoints=source_keypoints,
                          target_keypoints=target_keypoints)  # fmt: skip

    def transform_parsing(self, parsing, source_keypoints, target_keypoints) -> np.ndarray:
        """H_S only: u8 ``[B,H,W]`` parsing in the target pose."""
        return self._call("transform_parsing", parsing=parsing, source_keypoints=source_keypoints,
                          target_keypoints=target_keypoints)["parsing"]  # fmt: skip

    def render(self, image, parsing, source_keypoints, target_keypoints, target_parsing) -> np.ndarray:
        """H_A on an explicit target parsing: u8 ``[B,H,W,3]``."""
        return self._call("render", image=image, parsing=parsing, source_keypoints=source_keypoints,
                          target_keypoints=target_keypoints, target_parsing=target_parsing)["image"]  # fmt: skip

    def detect_heatmaps(self, image) -> np.ndarray:
        """P's heatmaps: u8 ``[B,H,W,3]`` -> float32 ``[B,H,W,18]`` in [0, 1] (workdir only)."""
        if self._detector is None:
            raise ModelError(
                f"{self.source}: keypoint detection needs the pose detector P, which only a training "
                "workdir holds: run with --workdir/--config, or give keypoints (--keypoints_csv, --openpose_json)"
            )
        image = self._check("image", image, (3,))
        return np.asarray(self._detector(image), np.float32)

    def parse_labels(self, image) -> np.ndarray:
        """The human parser's labels: u8 ``[B,H,W,3]`` -> u8 ``[B,H,W]`` (workdir with a parser only)."""
        return self.parser.parse_labels(image)


class Parser:
    """A trained human parser on numpy arrays at its resolution (``data.height x data.width``).

    Attributes:
      source: the checkpoint path.
      height, width: its resolution.
    """

    def __init__(self, source: str, fn, height: int, width: int):
        self.source = source
        self._fn = fn  # u8 [B, H, W, 3] tensor -> u8 [B, H, W]
        self.height, self.width = int(height), int(width)

    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    def parse_labels(self, image) -> np.ndarray:
        """u8 ``[B,H,W,3]`` -> u8 ``[B,H,W]`` SPT labels (argmax of the logits)."""
        image = np.asarray(image)
        if image.ndim != 4 or image.shape[1:] != (self.height, self.width, 3):
            raise ValueError(f"image must be [B, {self.height}, {self.width}, 3] for this parser, got {image.shape}")
        return self._fn(tf.constant(image.astype(np.uint8))).numpy()


def from_saved_model(path: str) -> Predictor:
    """Loads an exported SavedModel (a version directory or a base directory: newest version)."""
    version_dir = resolve_saved_model(path)
    loaded = tf.saved_model.load(version_dir)
    missing = [s for s in ("serving_default", "transform_parsing", "render") if s not in loaded.signatures]
    if missing:
        raise ModelError(f"{version_dir}: not an SPT export, signatures {missing} missing")
    spec = loaded.signatures["render"].structured_input_signature[1]["image"]
    h, w = spec.shape[1], spec.shape[2]
    logging.info("predictor: SavedModel %s (%dx%d)", version_dir, h, w)
    fns = {name: loaded.signatures[name] for name in ("serving_default", "transform_parsing", "render")}
    backend = Predictor("saved_model", version_dir, fns, h, w)
    backend._loaded = loaded  # keeps the restored variables alive
    return backend


def _restore(path, what, config, keys) -> networks.Networks:
    """Networks ``keys`` of ``config`` restored from ``path``; ModelError when they do not match."""
    nets = networks.Networks(config, keys)
    try:
        networks.restore(nets, path, keys)
    except (networks.IncompleteCheckpointError, ValueError, tf.errors.OpError) as e:
        raise CheckpointMismatchError(
            f"{path}: cannot restore {what} with this config (does --config match the run?): {e}"
        ) from None
    return nets


def _pose_detector_fn(config, workdir):
    """P of the workdir's pose_detector stage as ``u8 images -> heatmaps``; (None, its folder) without one."""
    path = networks.latest_checkpoint(workdir, "pose_detector")
    if path is None:
        return None, os.path.join(workdir, "pose_detector")
    net = _restore(path, "the pose detector", config, ("pose_detector",)).pose_detector
    logging.info("predictor: pose detector P from %s", path)
    h, w = int(config.data.height), int(config.data.width)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8)])
    def detect(image):
        return net(composite.from_uint8(image), training=False)

    fn = lambda image: detect(tf.constant(image)).numpy()  # noqa: E731
    fn.network = net  # keeps the variables alive
    return fn, path


def _train_parser_command(config, workdir) -> str:
    try:
        from configs import spt

        known = spt.DATASETS
    except ImportError:  # run from outside the repository root
        known = ()
    name = str(config.data.name)
    spec = f"configs/spt.py:{name}" if name in known else "CONFIG"
    return f"python train.py --config={spec} --workdir={workdir} --stage=parser"


def _parser(config, workdir) -> tuple[Parser | None, str]:
    """The workdir's trained human parser, or (None, why not)."""
    ckpt_dir = os.path.join(workdir, "parser")
    path = tf.train.latest_checkpoint(ckpt_dir)
    if path is None:
        return None, (
            f"{ckpt_dir}: no human parser checkpoint (its parser stage has not run); train it with "
            f"`{_train_parser_command(config, workdir)}`, or give a parsing map (--parsing / --lip_parsing)"
        )
    from spt_tf.models import human_parser

    h, w = int(config.data.height), int(config.data.width)
    net = _restore(path, "the human parser", config, ("parser",)).parser
    logging.info("predictor: human parser from %s", path)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8)])
    def parse(image):
        return human_parser.parse_labels(net, composite.from_uint8(image))

    parser = Parser(path, parse, h, w)
    parser._net = net  # keeps the variables alive
    return parser, path


def _workdir_config(workdir: str, config):
    workdir = os.fspath(workdir)
    if not os.path.isdir(workdir):
        raise ModelError(f"{workdir}: workdir not found")
    if config is None:
        spec = os.path.join(workdir, "config.json")
        if not os.path.isfile(spec):
            raise ModelError(f"{workdir}: no config.json; pass --config (the config the run was trained with)")
        return load_config(spec)
    if isinstance(config, str):
        return load_config(config)
    return config


def load_parser(workdir: str, config=None) -> Parser:
    """The human parser of a training workdir (its latest ``parser`` stage checkpoint).

    Args:
      workdir: the training workdir.
      config: a ConfigDict, a config spec (``file.py[:ARG]`` or ``.json``), or
        None for the run's resolved ``WORKDIR/config.json``.

    Raises:
      ModelError: no workdir / config; NoParserError: no parser checkpoint (the
        message names ``WORKDIR/parser`` and the command that trains it);
      CheckpointMismatchError: the checkpoint does not fit the config.
    """
    config = _workdir_config(workdir, config)
    parser, why = _parser(config, os.fspath(workdir))
    if parser is None:
        raise NoParserError(why)
    return parser


def from_workdir(workdir: str | None, config=None, checkpoint: str | None = None) -> Predictor:
    """Wraps a workdir's latest joint (else appearance) checkpoint like the SavedModel.

    Args:
      workdir: the training workdir (its pose detector and parser are loaded
        too when their stages ran).
      config: a ConfigDict, a config spec (``file.py[:ARG]`` or ``.json``), or
        None for the run's resolved ``WORKDIR/config.json``.
      checkpoint: an explicit checkpoint holding H_S and H_A instead of the
        workdir's latest; the workdir defaults to the run folder above it.
    """
    if checkpoint is not None and workdir is None:
        # A checkpoint sits in WORKDIR/<stage>/: P and the parser are looked up beside it.
        workdir = os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))
    workdir = os.fspath(workdir)
    config = _workdir_config(workdir, config)
    try:
        path = checkpoint or networks.latest_generator_checkpoint(workdir)
    except FileNotFoundError as e:
        raise ModelError(str(e)) from None
    nets = _restore(path, "H_S and H_A", config, ("hs", "ha"))
    logging.info("predictor: H_S and H_A from %s", path)
    mod = export_lib.SPTExportModule(nets.hs, nets.ha, config)
    fns = {name: getattr(mod, name) for name in ("serving_default", "transform_parsing", "render")}
    detector, det_path = _pose_detector_fn(config, workdir)
    if detector is None:
        logging.info("predictor: no pose detector checkpoint in %s; keypoint detection unavailable", det_path)
    parser, why = _parser(config, workdir)
    if parser is None:
        logging.info("predictor: %s; human parsing unavailable", why)
    predictor = Predictor("checkpoint", path, fns, config.data.height, config.data.width, detector, parser,
                          None if parser else why)  # fmt: skip
    predictor._module = mod
    return predictor


def load(model: str | None = None, workdir: str | None = None, config=None) -> Predictor:
    """``model`` (SavedModel) or ``workdir`` (+ optional ``config``): exactly one."""
    if bool(model) == bool(workdir):
        raise ModelError("give exactly one of --model (SavedModel) and --workdir (checkpoints)")
    if model:
        if config is not None:
            raise ModelError("--config goes with --workdir; a SavedModel carries its own resolution")
        return from_saved_model(model)
    return from_workdir(workdir, config)
