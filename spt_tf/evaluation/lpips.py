"""LPIPS v0.1, AlexNet-lin: the learned perceptual distance reported beside SSIM and FID.

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep
Features as a Perceptual Metric" (CVPR 2018); this is the metric of the
authors' ``lpips`` package (``richzhang/PerceptualSimilarity`` repository),
version 0.1, network ``alex``, with learned linear layers (``lpips=True``),
re-implemented in TensorFlow:

  1. images in [-1, 1] (uint8 is mapped by ``x / 127.5 - 1``, the official
     ``im2tensor``), then the official ``ScalingLayer``:
     ``(x - SHIFT) / SCALE`` per RGB channel;
  2. the AlexNet feature trunk of torchvision's ``alexnet().features``, tapped
     after each of its five ReLUs (relu1..relu5, 64/192/384/256/256 channels);
  3. per tap: each feature vector unit-normalised over channels
     (``x / (sqrt(sum x^2) + 1e-10)``, the official ``normalize_tensor``),
     squared difference of the two images' features, a 1x1 convolution with the
     learned non-negative ``lin`` weights (no bias; its dropout is off at
     evaluation), spatial mean;
  4. the sum over the five taps: one distance per image pair.

The network is fully convolutional and, as the official code does, runs at the
images' own size (no resize). Both images of a pair must have the same size,
at least :data:`MIN_SIZE` pixels on each side.

Weights come from one ``.npz`` file (:func:`load_weights`, format below; how to
make it from the official weights: ``docs/lpips.md``). Arrays keep PyTorch's
layouts and names; the loader converts them:

  * ``features.{0,3,6,8,10}.weight``: the five AlexNet convolutions, OIHW,
    shapes ``[64,3,11,11]``, ``[192,64,5,5]``, ``[384,192,3,3]``,
    ``[256,384,3,3]``, ``[256,256,3,3]`` (torchvision ``alexnet`` state dict);
  * ``features.{0,3,6,8,10}.bias``: their biases ``[64]`` ... ``[256]``;
  * ``lin{0..4}.model.1.weight``: the learned linear layers, ``[1, C, 1, 1]``
    with C = 64, 192, 384, 256, 256 (the ``lpips`` package's
    ``weights/v0.1/alex.pth``).

Other keys (e.g. torchvision's ``classifier.*``) are ignored. A missing key, a
wrong shape or a non-finite value is refused with :class:`LPIPSWeightsError`
naming the key.

No file: :class:`LPIPSWeightsError` unless ``allow_random_weights=True``, which
builds seeded random weights (He-normal convolutions, non-negative ``lin``),
logs a warning and sets :attr:`LPIPS.random`; such distances are smoke-test
numbers, marked with :data:`RANDOM_WARNING`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from absl import logging

RANDOM_WARNING = "RANDOM LPIPS WEIGHTS — not comparable"
WEIGHTS_DOC = "docs/lpips.md"

# The official ScalingLayer (LPIPS v0.1): per-channel shift and scale, RGB.
SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
SCALE = np.array([0.458, 0.448, 0.450], np.float32)
EPS = 1e-10  # the official normalize_tensor's epsilon

CHANNELS = (64, 192, 384, 256, 256)  # relu1..relu5
# torchvision alexnet().features: (state-dict index, out, in, kernel, stride, padding,
# max-pool 3/2 before this convolution).
CONVS = (
    (0, 64, 3, 11, 4, 2, False),
    (3, 192, 64, 5, 1, 2, True),
    (6, 384, 192, 3, 1, 1, True),
    (8, 256, 384, 3, 1, 1, False),
    (10, 256, 256, 3, 1, 1, False),
)
# The smallest side whose relu5 map is not empty: conv1 must give >= 7 so that
# both max-pools leave at least one position.
MIN_SIZE = 31


class LPIPSWeightsError(RuntimeError):
    """LPIPS weights are missing, malformed, or random without permission."""


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of the weights file and its shape (PyTorch layouts).

    Returns:
      ``{key: shape}`` for the five convolutions (weight OIHW and bias) and
      the five ``lin`` layers.
    """
    shapes = {}
    for index, out, inp, k, _, _, _ in CONVS:
        shapes[f"features.{index}.weight"] = (out, inp, k, k)
        shapes[f"features.{index}.bias"] = (out,)
    for i, c in enumerate(CHANNELS):
        shapes[f"lin{i}.model.1.weight"] = (1, c, 1, 1)
    return shapes


def check_weights_policy(weights: str | None, allow_random_weights: bool) -> None:
    """Raises :class:`LPIPSWeightsError` for empty weights without permission (builds nothing).

    Args:
      weights: path of the LPIPS weights file, or "" / None.
      allow_random_weights: permit random weights (tests, smoke runs).

    Raises:
      LPIPSWeightsError: ``weights`` is empty and ``allow_random_weights`` is False.
    """
    if not weights and not allow_random_weights:
        raise LPIPSWeightsError(
            "LPIPS needs its weights file (an .npz with the torchvision AlexNet trunk "
            "'features.*' and the LPIPS v0.1 linear layers 'lin0..lin4.model.1.weight'), and "
            f"none was given. {WEIGHTS_DOC} shows how to convert the official weights "
            "(torchvision alexnet(pretrained=True) and the lpips package's "
            "weights/v0.1/alex.pth) on a machine with torch and pass the file's path; or "
            f"allow random weights for a smoke test (results marked '{RANDOM_WARNING}')."
        )


def validate_weights(arrays: Mapping[str, np.ndarray], what: str = "weights") -> dict[str, np.ndarray]:
    """Checks keys, shapes and values of weight arrays in the file format.

    Args:
      arrays: ``{key: array}`` in the documented format (extra keys allowed).
      what: names the source in error messages (e.g. the file path).

    Returns:
      The needed arrays as float32, keyed as in :func:`expected_shapes`.

    Raises:
      LPIPSWeightsError: a key is missing, has the wrong shape, or holds
        non-finite values (the message names the key).
    """
    out = {}
    for key, shape in expected_shapes().items():
        if key not in arrays:
            raise LPIPSWeightsError(
                f"LPIPS weights {what}: key '{key}' is missing (expected shape {shape}; see {WEIGHTS_DOC})"
            )
        value = np.asarray(arrays[key])
        if tuple(value.shape) != shape:
            raise LPIPSWeightsError(
                f"LPIPS weights {what}: key '{key}' has shape {tuple(value.shape)}, "
                f"expected {shape} (PyTorch layout; see {WEIGHTS_DOC})"
            )
        if not np.issubdtype(value.dtype, np.floating) or not np.all(np.isfinite(value)):
            raise LPIPSWeightsError(
                f"LPIPS weights {what}: key '{key}' must hold finite floats (got dtype {value.dtype})"
            )
        out[key] = value.astype(np.float32)
    negative = [k for k in out if k.startswith("lin") and np.any(out[k] < 0)]
    if negative:
        # The official training clamps lin at 0; a negative weight can make distances negative.
        logging.warning("LPIPS weights %s: negative linear weights in %s", what, ", ".join(negative))
    return out


def load_weights(path: str) -> dict[str, np.ndarray]:
    """Reads and validates an LPIPS weights ``.npz`` (format in the module docstring).

    Args:
      path: the ``.npz`` file.

    Returns:
      ``{key: float32 array}`` in PyTorch layouts, as :func:`validate_weights`.

    Raises:
      LPIPSWeightsError: not a file, unreadable, or malformed (names the key).
    """
    if not os.path.isfile(path):
        raise LPIPSWeightsError(f"LPIPS weights: {path} is not a file (expected the .npz described in {WEIGHTS_DOC})")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile / numpy raise many types for a wrong or corrupt file
        raise LPIPSWeightsError(
            f"could not read LPIPS weights from {path}: {type(e).__name__}: {e} "
            f"(expected the .npz described in {WEIGHTS_DOC})"
        ) from e
    return validate_weights(arrays, path)


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic random weights in the file format (tests, smoke runs).

    Convolutions He-normal (std ``sqrt(2 / fan_in)``) with small random biases;
    ``lin`` weights uniform in [0, 0.2), non-negative as the trained ones. Drawn
    from ``numpy.random.default_rng(seed)`` alone, so two processes agree.

    Args:
      seed: the generator's seed.

    Returns:
      ``{key: float32 array}`` with the keys and shapes of :func:`expected_shapes`.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, shape in expected_shapes().items():
        if key.startswith("lin"):
            value = rng.uniform(0.0, 0.2, shape)
        elif key.endswith(".bias"):
            value = rng.normal(0.0, 0.05, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        out[key] = value.astype(np.float32)
    return out


def build_trunk(arrays: Mapping[str, np.ndarray] | None = None) -> keras.Model:
    """The AlexNet feature trunk with its five ReLU taps, as a Keras model.

    PyTorch padding is reproduced exactly: explicit symmetric ``ZeroPadding2D``
    then a 'valid' convolution; max-pools 3/2 without padding (PyTorch's floor
    mode equals 'valid'). Float32 layers whatever the global dtype policy.

    Args:
      arrays: validated weights (:func:`validate_weights`); None leaves Keras'
        initial values.

    Returns:
      A model mapping ``[B, H, W, 3]`` (already scaled) to the five taps
      ``[B, h_i, w_i, C_i]``.
    """
    x = inputs = keras.Input((None, None, 3), dtype="float32", name="scaled")
    taps = []
    for i, (index, out, _, k, stride, pad, pool) in enumerate(CONVS):
        if pool:
            x = keras.layers.MaxPooling2D(3, 2, padding="valid", dtype="float32", name=f"pool{i}")(x)
        x = keras.layers.ZeroPadding2D(pad, dtype="float32", name=f"pad{i + 1}")(x)
        conv = keras.layers.Conv2D(
            out,
            k,
            strides=stride,
            padding="valid",
            activation="relu",
            dtype="float32",
            name=f"conv{i + 1}",
        )
        x = conv(x)
        if arrays is not None:
            # OIHW (PyTorch) -> HWIO (Keras).
            conv.set_weights(
                [
                    np.transpose(arrays[f"features.{index}.weight"], (2, 3, 1, 0)),
                    arrays[f"features.{index}.bias"],
                ]
            )
        taps.append(x)
    return keras.Model(inputs, taps, name="lpips_alexnet")


def scale_inputs(images: tf.Tensor) -> tf.Tensor:
    """The official ScalingLayer: ``(x - SHIFT) / SCALE``, x in [-1, 1], channels last."""
    return (tf.cast(images, tf.float32) - SHIFT) / SCALE


def normalize_tensor(features: tf.Tensor) -> tf.Tensor:
    """Unit-normalises each feature vector over channels (official ``normalize_tensor``)."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(features), axis=-1, keepdims=True))
    return features / (norm + EPS)


def head(features_a, features_b, lin_weights) -> tf.Tensor:
    """The LPIPS distance from the two images' tapped features.

    Args:
      features_a: the five taps of the first images, ``[B, h_i, w_i, C_i]``.
      features_b: the same for the second images (same shapes).
      lin_weights: five vectors ``[C_i]`` (the 1x1 ``lin`` convolutions, one
        output channel, no bias).

    Returns:
      ``[B]`` float32: sum over taps of the spatial mean of the weighted
      squared difference of the unit-normalised features.
    """
    total = 0.0
    for fa, fb, w in zip(features_a, features_b, lin_weights, strict=True):
        diff = tf.square(normalize_tensor(fa) - normalize_tensor(fb))
        # The 1x1 convolution with one output channel: a weighted sum over channels.
        per_position = tf.reduce_sum(diff * tf.cast(w, tf.float32), axis=-1)
        total = total + tf.reduce_mean(per_position, axis=[1, 2])
    return total


class LPIPS:
    """LPIPS v0.1 AlexNet-lin distance between image pairs.

    Args:
      weights: path of the weights ``.npz`` (format in the module docstring),
        a mapping ``{key: array}`` in that same format, or "" / None (random
        weights, refused unless ``allow_random_weights``).
      allow_random_weights: permit seeded random weights (tests, smoke runs).
      seed: seed of the random weights.

    Attributes:
      random: True when the weights are random.
      description: "file <path>", "arrays" or "random (seed N)".
      comparable: False for random weights.
      warnings: the warnings to print with every output (:data:`RANDOM_WARNING`).
      trunk: the Keras AlexNet trunk (:func:`build_trunk`).
      lin_weights: the five ``lin`` vectors ``[C_i]``, float32.

    Call:
      a, b: images ``[B, H, W, 3]``, uint8 in [0, 255] (or float in [-1, 1]),
        same shape, H and W at least :data:`MIN_SIZE`; any size, no resize.

    Returns:
      ``np.ndarray [B]`` float32, the distance of each pair.

    Raises:
      LPIPSWeightsError: no weights without ``allow_random_weights``, or a
        missing / malformed weights file (names what is wrong).
    """

    def __init__(
        self,
        weights: str | os.PathLike | Mapping[str, np.ndarray] | None,
        allow_random_weights: bool = False,
        seed: int = 0,
    ):
        if isinstance(weights, Mapping):
            arrays = validate_weights(weights, "arrays")
            self.description = "arrays"
        else:
            weights = os.fspath(weights) if weights else ""
            check_weights_policy(weights, allow_random_weights)
            if weights:
                arrays = load_weights(weights)
                self.description = f"file {os.path.abspath(weights)}"
            else:
                arrays = random_weights(seed)
                self.description = f"random (seed {seed})"
                logging.warning(
                    "%s: LPIPS has random weights (allow_random_weights); its distances are smoke-test numbers",
                    RANDOM_WARNING,
                )
        self.random = self.description.startswith("random")
        self.comparable = not self.random
        self.warnings = [RANDOM_WARNING] if self.random else []
        self.trunk = build_trunk(arrays)
        self.lin_weights = [arrays[f"lin{i}.model.1.weight"].reshape(c) for i, c in enumerate(CHANNELS)]
        self._lin = [tf.constant(w) for w in self.lin_weights]
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        # One trace for every batch and image size.
        self._fn = tf.function(self._forward, input_signature=[spec, spec], autograph=False)

    def _forward(self, a, b):
        # One trunk pass over both image sets (no layer depends on the batch, so this
        # equals two separate passes).
        n = tf.shape(a)[0]
        taps = self.trunk(scale_inputs(tf.concat([a, b], 0)), training=False)
        return head([t[:n] for t in taps], [t[n:] for t in taps], self._lin)

    @staticmethod
    def _prepare(images, name: str) -> np.ndarray:
        x = np.asarray(images)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"lpips: expected {name} as [B, H, W, 3] images, got shape {x.shape}")
        if min(x.shape[1:3]) < MIN_SIZE:
            raise ValueError(
                f"lpips: {name} is {x.shape[1]}x{x.shape[2]}; AlexNet needs at least {MIN_SIZE}x{MIN_SIZE}"
            )
        if x.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        if np.issubdtype(x.dtype, np.floating):
            return x.astype(np.float32)
        raise TypeError(f"lpips: {name} must be uint8 in [0, 255] or float in [-1, 1], got {x.dtype}")

    def __call__(self, a, b) -> np.ndarray:
        a, b = self._prepare(a, "a"), self._prepare(b, "b")
        if a.shape != b.shape:
            raise ValueError(f"lpips: image shapes differ: {a.shape} vs {b.shape}")
        return self._fn(a, b).numpy()
