"""One interface over an exported SavedModel and a training workdir's checkpoints.

Both expose the export signatures (``spt_tf.export.module``), at the model's
resolution, on numpy arrays:

* ``pose_transfer(image, parsing, source_keypoints, target_keypoints)``
  -> ``{"image": u8[B,H,W,3], "parsing": u8[B,H,W]}`` (H_S then H_A);
* ``transform_parsing(parsing, source_keypoints, target_keypoints)`` -> ``u8[B,H,W]``;
* ``render(image, parsing, source_keypoints, target_keypoints, target_parsing)``
  -> ``u8[B,H,W,3]`` (H_A on a given target parsing: texture transfer, edits).

A workdir is wrapped in :class:`spt_tf.export.module.SPTExportModule`, the very
module the SavedModel is written from, so both paths run the same graph. Only a
workdir also holds the pose detector P (:meth:`Backend.detect_heatmaps`) and,
once its ``parser`` stage ran, the human parser (:meth:`Backend.parse_labels`;
:func:`load_parser` loads the parser of any workdir alone, e.g. beside a SavedModel).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from spt_tf import geometry, models
from spt_tf.export import module as export_lib
from spt_tf.training import stages as stages_lib

NUM_KEYPOINTS = geometry.NUM_KEYPOINTS


class ModelError(ValueError):
    """The model directory, workdir or config cannot be used."""


# ---------------------------------------------------------------- locating models


def resolve_saved_model(path: str) -> str:
    """A SavedModel version directory, or the newest numbered version under a base directory.

    Raises:
      ModelError: ``path`` is neither.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ModelError(f"{path}: SavedModel directory not found")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [
        int(d) for d in os.listdir(path)
        if re.fullmatch(r"\d+", d) and os.path.isfile(os.path.join(path, d, "saved_model.pb"))
    ]  # fmt: skip
    if not versions:
        raise ModelError(
            f"{path}: no saved_model.pb here nor in a numbered version subdirectory (export one with "
            "python export.py --workdir ... --export_dir ...)"
        )
    return os.path.join(path, str(max(versions)))


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Loads a config: ``file.py[:ARG]`` (``get_config(ARG)``) or a workdir's resolved ``config.json``."""
    spec = os.fspath(spec)
    path, _, arg = spec.partition(":") if not os.path.isfile(spec) else (spec, "", "")
    if not os.path.isfile(path):
        raise ModelError(f"{path}: config file not found")
    if path.endswith(".json"):
        try:
            with open(path) as f:
                return ml_collections.ConfigDict(json.load(f))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelError(f"{path}: cannot read the config JSON ({e})") from None
    if not path.endswith(".py"):
        raise ModelError(f"{path}: a config is a .py file (with get_config) or a workdir's config.json")
    name = "_spt_app_config_" + re.sub(r"\W", "_", os.path.abspath(path))
    module_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(mod)
    if not hasattr(mod, "get_config"):
        raise ModelError(f"{path}: no get_config() in the config file")
    return mod.get_config(arg) if arg else mod.get_config()


# ---------------------------------------------------------------- backend


class Backend:
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


def from_saved_model(path: str) -> Backend:
    """Loads an exported SavedModel (a version directory or a base directory: newest version)."""
    version_dir = resolve_saved_model(path)
    loaded = tf.saved_model.load(version_dir)
    missing = [s for s in ("serving_default", "transform_parsing", "render") if s not in loaded.signatures]
    if missing:
        raise ModelError(f"{version_dir}: not an SPT export, signatures {missing} missing")
    spec = loaded.signatures["render"].structured_input_signature[1]["image"]
    h, w = spec.shape[1], spec.shape[2]
    logging.info("apps: SavedModel %s (%dx%d)", version_dir, h, w)
    fns = {name: loaded.signatures[name] for name in ("serving_default", "transform_parsing", "render")}
    backend = Backend("saved_model", version_dir, fns, h, w)
    backend._loaded = loaded  # keeps the restored variables alive
    return backend


def _build_generators(config):
    h, w, n = int(config.data.height), int(config.data.width), int(config.model.num_labels)
    hs, ha = models.build_semantic_generator(config), models.build_appearance_generator(config)
    kp = tf.fill([1, NUM_KEYPOINTS, 2], -1.0)
    cond = geometry.pair_conditioning(kp, kp, h, w)
    par, img = tf.zeros([1, h, w, n]), tf.zeros([1, h, w, 3])
    # One call on zeros creates every variable, so the restore can match them all.
    hs(stages_lib.hs_inputs(par, cond["source_pose"], cond["source_mask"], cond["target_pose"], cond["target_mask"]))
    ha(stages_lib.ha_inputs(img, par, cond["source_pose"], par, cond["target_pose"], cond["transforms"],
                            cond["part_masks"]))  # fmt: skip
    return hs, ha


def _restore(path, what, **networks):
    # Checkpoints key each network's variables by path (training.loop.variables_by_path):
    # Keras 3 layers kept in lists are not children of a model in TF's object graph.
    from spt_tf.training.loop import variables_by_path

    try:
        status = tf.train.Checkpoint(**{k: variables_by_path(m) for k, m in networks.items()}).restore(path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ModelError(
            f"{path}: cannot restore {what} with this config (does --config match the run?): {e}"
        ) from None


def _pose_detector_fn(config, workdir):
    ckpt_dir = os.path.join(workdir, "pose_detector")
    path = tf.train.latest_checkpoint(ckpt_dir)
    if path is None:
        return None, ckpt_dir
    h, w = int(config.data.height), int(config.data.width)
    net = models.build_pose_detector(config)
    net(tf.zeros([1, h, w, 3]))
    _restore(path, "the pose detector", pose_detector=net)
    logging.info("apps: pose detector P from %s", path)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8)])
    def detect(image):
        return net(tf.cast(image, tf.float32) / 127.5 - 1.0, training=False)

    return (lambda image: detect(tf.constant(image)).numpy()), path


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
    net = models.build_human_parser(config)
    net(tf.zeros([1, h, w, 3]))
    _restore(path, "the human parser", parser=net)
    logging.info("apps: human parser from %s", path)

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8)])
    def parse(image):
        return human_parser.parse_labels(net, tf.cast(image, tf.float32) / 127.5 - 1.0)

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
      ModelError: no workdir / config, or no parser checkpoint (the message names
        ``WORKDIR/parser`` and the command that trains it).
    """
    config = _workdir_config(workdir, config)
    parser, why = _parser(config, os.fspath(workdir))
    if parser is None:
        raise ModelError(why)
    return parser


def from_workdir(workdir: str, config=None) -> Backend:
    """Wraps a workdir's latest joint (else appearance) checkpoint like the SavedModel.

    Args:
      workdir: the training workdir.
      config: a ConfigDict, a config spec (``file.py[:ARG]`` or ``.json``), or
        None for the run's resolved ``WORKDIR/config.json``.
    """
    workdir = os.fspath(workdir)
    config = _workdir_config(workdir, config)
    try:
        path = export_lib.latest_generator_checkpoint(workdir)
    except FileNotFoundError as e:
        raise ModelError(str(e)) from None
    hs, ha = _build_generators(config)
    _restore(path, "H_S and H_A", hs=hs, ha=ha)
    logging.info("apps: H_S and H_A from %s", path)
    mod = export_lib.SPTExportModule(hs, ha, config)
    fns = {name: getattr(mod, name) for name in ("serving_default", "transform_parsing", "render")}
    detector, det_path = _pose_detector_fn(config, workdir)
    if detector is None:
        logging.info("apps: no pose detector checkpoint in %s; --detect unavailable", det_path)
    parser, why = _parser(config, workdir)
    if parser is None:
        logging.info("apps: %s; --parse unavailable", why)
    backend = Backend("checkpoint", path, fns, config.data.height, config.data.width, detector, parser,
                      None if parser else why)  # fmt: skip
    backend._module = mod
    return backend


def load(model: str | None = None, workdir: str | None = None, config=None) -> Backend:
    """``model`` (SavedModel) or ``workdir`` (+ optional ``config``): exactly one."""
    if bool(model) == bool(workdir):
        raise ModelError("give exactly one of --model (SavedModel) and --workdir (checkpoints)")
    if model:
        if config is not None:
            raise ModelError("--config goes with --workdir; a SavedModel carries its own resolution")
        return from_saved_model(model)
    return from_workdir(workdir, config)
