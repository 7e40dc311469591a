"""Every network of a config, built and restored in one place.

Training, export, evaluation, the apps and the studio all get their networks
here: :class:`Networks` builds the ones asked for (each with every variable
created by one call on zeros), and :func:`restore` / :func:`from_workdir` fill
them from a training checkpoint.

Checkpoint layout (what the training loop writes under ``WORKDIR/<stage>/``):
one child per network, keyed ``pose_detector``, ``hs``, ``ha``, ``ds``, ``da``,
``dface`` and ``parser``, each a map ``{variable path: variable}``
(:func:`variables_by_path`). Keras 3 layers held in Python lists are not
children of a model in TF's object graph, so checkpointing the model objects
would silently skip their weights; the path-keyed map holds every weight
(non-trainable ones too), and a restore asserts that every weight was found.
VGG (frozen, built only for ``loss.features="vgg"``) is never saved.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from spt_tf import composite, geometry
from spt_tf import models as spt_models

# Checkpoint keys of the trained networks, and "vgg" (built, never saved).
KEYS = ("pose_detector", "hs", "ha", "ds", "da", "dface", "parser", "vgg")
# The stages whose checkpoints hold trained H_S and H_A, newest of Algorithm 1 first.
GENERATOR_STAGES = ("progressive_all", "progressive_local", "joint", "appearance")
# What the content and style losses compare (loss.features).
FEATURES = ("vgg", "statistics")


class IncompleteCheckpointError(ValueError):
    """Some network weights cannot be restored: the network would run with random weights."""


def perceptual_features(config) -> str:
    """``loss.features``, validated: ``"vgg"`` (the paper) or ``"statistics"`` (offline recipe)."""
    kind = str(config.loss.features)
    if kind not in FEATURES:
        raise ValueError(f"loss.features must be one of {FEATURES}, got {kind!r}")
    return kind


def spt_keys(config) -> tuple[str, ...]:
    """The networks Algorithm 1 trains under ``config`` (D_face and VGG only where used)."""
    keys = ["pose_detector", "hs", "ha", "ds", "da"]
    if int(config.model.face_crop_size) > 0:
        keys.append("dface")
    if perceptual_features(config) == "vgg":
        keys.append("vgg")
    return tuple(keys)


def build(config, key: str) -> keras.Model:
    """Network ``key`` of :data:`KEYS` for ``config``, every variable created (one call on zeros)."""
    c = config
    h, w, n = int(c.data.height), int(c.data.width), int(c.model.num_labels)
    img = tf.zeros([1, h, w, 3])
    if key in ("hs", "ha"):
        kp = tf.fill([1, geometry.NUM_KEYPOINTS, 2], -1.0)
        cond = geometry.pair_conditioning(kp, kp, h, w)
        par = tf.zeros([1, h, w, n])
        if key == "hs":
            net = spt_models.build_semantic_generator(c)
            composite.predict_parsing(net, par, cond)
        else:
            net = spt_models.build_appearance_generator(c)
            composite.render(net, img, par, par, cond)
        return net
    if key == "pose_detector":
        net = spt_models.build_pose_detector(c)
    elif key == "parser":
        net = spt_models.build_human_parser(c)
    elif key == "vgg":
        net = spt_models.build_vgg(c)
    elif key in ("ds", "da", "dface"):
        channels = {"ds": n + geometry.NUM_KEYPOINTS, "da": 3 + n, "dface": 3}[key]
        size = (h, w)
        if key == "dface":
            size = (int(c.model.face_crop_size),) * 2
            if size[0] <= 0:
                raise ValueError("D_face needs model.face_crop_size > 0")
        net = spt_models.build_discriminator(c, channels)
        img = tf.zeros([1, *size, channels])
    else:
        raise ValueError(f"unknown network {key!r}; one of {KEYS}")
    net(img)
    return net


class Networks:
    """Networks of one config, built once (inside a strategy scope when training).

    Attributes ``pose_detector``, ``hs``, ``ha``, ``ds``, ``da``, ``dface``,
    ``parser``, ``vgg``: the network, or None when not built.

    Args:
      config: the run config.
      keys: which networks (default :func:`spt_keys`: those of Algorithm 1).
    """

    def __init__(self, config, keys=None):
        self.config = config
        self.keys = tuple(spt_keys(config) if keys is None else keys)
        unknown = [k for k in self.keys if k not in KEYS]
        if unknown:
            raise ValueError(f"unknown networks {unknown}; choose from {KEYS}")
        for key in KEYS:
            setattr(self, key, build(config, key) if key in self.keys else None)

    def models(self) -> dict:
        """The trained networks by checkpoint key (VGG is frozen and not saved)."""
        return {k: getattr(self, k) for k in self.keys if k != "vgg"}

    def trackables(self, keys=None) -> dict:
        """Checkpoint children: each network's variables keyed by their path."""
        return {k: variables_by_path(m) for k, m in self.models().items() if keys is None or k in keys}

    def has_finite_weights(self) -> bool:
        return all(np.isfinite(v.numpy()).all() for m in self.models().values() for v in m.weights)


def variables_by_path(model) -> dict:
    """{variable path relative to the model: variable} for every weight of `model`.

    Raises:
      ValueError: two weights share a path (the checkpoint would be ambiguous).
    """
    prefix = model.name + "/"
    out = {}
    for v in model.weights:
        key = v.path[len(prefix) :] if v.path.startswith(prefix) else v.path
        if key in out:
            raise ValueError(f"{model.name}: two weights share the path {key!r}")
        out[key] = v
    return out


def check_reachable(root: tf.train.Checkpoint, networks: dict) -> None:
    """Raises unless every weight of ``networks`` is in ``root``'s object graph.

    ``assert_existing_objects_matched`` only speaks for the objects the
    checkpoint machinery can see; a variable outside the object graph would be
    neither saved nor restored, silently. This makes that loud.
    """
    reachable = {id(x) for x in tf.train.TrackableView(root).descendants()}
    for name, net in networks.items():
        missing = [w.path for w in net.weights if id(w) not in reachable]
        if missing:
            raise IncompleteCheckpointError(
                f"{name}: {len(missing)} of its {len(net.weights)} variables are invisible to "
                f"tf.train.Checkpoint (e.g. {missing[:3]}), so no checkpoint can hold or restore them "
                "and the network would run with random weights"
            )


def restore(nets: Networks, path: str, keys=None) -> None:
    """Restores networks ``keys`` (default: all of ``nets``) from a training checkpoint.

    Raises:
      IncompleteCheckpointError: a weight of those networks is missing from the
        checkpoint (another config or code version, or other networks).
    """
    children = nets.trackables(keys)
    root = tf.train.Checkpoint(**children)
    check_reachable(root, {k: getattr(nets, k) for k in children})
    status = root.restore(path)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:  # TF's message lists variable values: keep its first line
        raise IncompleteCheckpointError(
            f"{path}: the checkpoint lacks weights of {', '.join(children)} ({str(e).splitlines()[0]}); "
            "it was written by another config or code version, or holds other networks"
        ) from None


def latest_checkpoint(workdir: str, stage: str) -> str | None:
    """The newest checkpoint of ``WORKDIR/<stage>/``, or None."""
    return tf.train.latest_checkpoint(os.path.join(os.fspath(workdir), stage))


def latest_generator_checkpoint(workdir: str) -> str:
    """The newest checkpoint holding trained H_S and H_A (latest stage of Algorithm 1).

    Raises:
      FileNotFoundError: no appearance, joint or progressive checkpoint in ``workdir``.
    """
    for stage in GENERATOR_STAGES:
        path = latest_checkpoint(workdir, stage)
        if path:
            return path
    raise FileNotFoundError(
        f"{workdir}: no checkpoint of stage 'joint' or 'appearance' holding H_S and H_A; train first "
        "(python train.py --stage all ...) or pass --checkpoint"
    )
