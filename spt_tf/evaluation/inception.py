"""Inception v3 features for IS and FID (``keras.applications.InceptionV3``).

:class:`InceptionFeatures` maps images in [-1, 1] (or uint8) to the two things
the metrics need, in one forward pass:

  * logits ``[B, 1000]`` (the classifier before its softmax): Inception score;
  * pool features ``[B, 2048]`` (``avg_pool``, the global average pool before
    the classifier): FID.

Images are resized (bilinear) to ``input_size x input_size``; Keras'
InceptionV3 expects inputs in [-1, 1] (its "tf" preprocessing), the network
convention here, so no other scaling happens.

Weights (``config.eval.inception_weights``):
  * ``"imagenet"``: the Keras ImageNet file
    ``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``, downloaded by
    ``keras.utils.get_file`` into ``~/.keras/models`` on a connected machine.
    Offline the download fails and :class:`InceptionWeightsError` says how to
    proceed (copy that file over and pass its path).
  * a path: that same ``.h5`` file, or a ``.weights.h5`` written by
    ``save_weights`` of an InceptionV3 with its top (1000 classes).
  * ``""`` / ``None``: refused (:class:`InceptionWeightsError`) unless
    ``allow_random_weights=True``, which gives deterministic random weights
    (He-normal kernels from ``numpy.random.default_rng(seed)``, so two
    processes get the same network and cached FID statistics stay valid; the
    classifier calibrated on seeded noise images so IS is not stuck at 1) and
    sets :attr:`InceptionFeatures.random`; the evaluator then marks every
    output with :data:`RANDOM_WARNING`.

These are the Keras ImageNet weights, not the 2015 TF graph of the original
Inception score code nor the ``pt_inception-2015-12-05`` network of
pytorch-fid: absolute IS / FID values are comparable between runs of this
project, not digit for digit with published tables.

``input_size`` below 299 (down to 75, the smallest Keras accepts) exists for the
test suite only: a smaller network input is much faster on CPU, and the
evaluator marks such results as not comparable too.
"""

from __future__ import annotations

import hashlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

DEFAULT_SIZE = 299
MIN_SIZE = 75
NUM_CLASSES = 1000
POOL_DIM = 2048
RANDOM_WARNING = "RANDOM INCEPTION WEIGHTS — not comparable"
SMALL_INPUT_WARNING = "INCEPTION INPUT {size}x{size} (tests only) — not comparable"

# keras.applications.inception_v3's download (same name, URL and hash).
IMAGENET_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/" + IMAGENET_FILE
IMAGENET_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"


class InceptionWeightsError(RuntimeError):
    """Inception weights are missing, unreadable, or random without permission."""


def _file_tag(path: str) -> str:
    """Short content hash of a weights file (names the cached FID statistics)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:10]


def _randomize(model: keras.Model, seed: int) -> None:
    """Deterministic random weights: He-normal kernels, then a calibrated classifier.

    Keras' own initialisers draw from global seeds that other code moves; this
    depends on ``seed`` alone, so two processes build the same network (and
    cached FID statistics stay valid). He-normal kernels keep the features
    from vanishing through the 94 ReLU convolutions (the batch norms sit at
    their initial statistics). A plain random classifier on top would give
    near-uniform softmaxes (IS = 1.000 for any images, a smoke test that cannot
    fail), so :func:`_calibrate_classifier` centres and scales it.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for var in layer.weights:
            shape = tuple(var.shape)
            if len(shape) < 2 or layer.name == "predictions":
                continue  # biases, batch-norm beta and statistics keep their initial values
            fan_in = int(np.prod(shape[:-1]))
            var.assign(rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in)))
    _calibrate_classifier(model, rng)


def _calibrate_classifier(
    model: keras.Model, rng: np.random.Generator, temperature: float = 3.0, num_probes: int = 16
) -> None:
    """Random classifier on the deviations of the pool features from their mean.

    The pool features of ``num_probes`` smooth random images (seeded: 4 x 4
    noise, bilinear upsampled) give a mean m and a scale s; the classifier
    becomes ``logits = W (x - m)`` with W ~ N(0, (temperature / (s sqrt(D)))^2),
    so logits spread by about ``temperature`` and their argmax varies from
    image to image. Still no data: everything follows from the seed.
    """
    size = int(model.input.shape[1])
    pool = keras.Model(model.input, model.get_layer("avg_pool").output)
    coarse = rng.uniform(-1.0, 1.0, (num_probes, 4, 4, 3)).astype(np.float32)
    probes = tf.image.resize(coarse, [size, size], method="bilinear")
    # Two probes a call: an eager Keras call keeps every layer's output until it
    # returns (16 probes at 299 x 299 would hold ~1.9 GB for a moment).
    feats = np.concatenate([pool(probes[i : i + 2], training=False).numpy() for i in range(0, num_probes, 2)]).astype(
        np.float64
    )
    mean = feats.mean(0)
    scale = max(float(np.sqrt(((feats - mean) ** 2).mean())), 1e-12)
    dense = model.get_layer("predictions")
    dim, classes = dense.kernel.shape
    kernel = rng.standard_normal((dim, classes)) * (temperature / (scale * np.sqrt(dim)))
    dense.kernel.assign(kernel.astype(np.float32))
    dense.bias.assign((-(mean @ kernel)).astype(np.float32))


def check_weights_policy(weights: str | None, allow_random_weights: bool) -> None:
    """Raises :class:`InceptionWeightsError` for empty weights without permission (builds nothing)."""
    if not weights and not allow_random_weights:
        raise InceptionWeightsError(
            "IS and FID need Inception v3 weights, and config.eval.inception_weights is empty. "
            "Set --config.eval.inception_weights=imagenet (downloads the Keras ImageNet file on "
            f"a connected machine) or to a local copy of {IMAGENET_FILE}; or pass "
            "--allow_random_weights to compute them with random weights (results marked "
            f"'{RANDOM_WARNING}'); or --skip_inception to leave IS and FID out."
        )


class InceptionFeatures:
    """Inception v3 logits and pool features of images.

    Args:
      weights: "imagenet", a weights file path, or "" / None (random; see the
        module docstring).
      allow_random_weights: permit random weights (tests, smoke runs).
      input_size: network input side, 299 (the field's) or down to 75 (tests).
      seed: seed of the random weights.

    Attributes:
      random: True when the weights are random.
      description: "imagenet", "file <path>" or "random (seed N)".
      cache_tag: short string naming weights and input size, e.g.
        "imagenet_299", "file-<sha1>_299", "random-s0_75".
      comparable: False for random weights or an input other than 299.
      warnings: the warnings the evaluator must print with every output.

    Call:
      images: [B, H, W, 3] float in [-1, 1] or uint8 in [0, 255].

    Returns:
      (logits [B, 1000] float32, pool [B, 2048] float32).

    Raises:
      InceptionWeightsError: weights unavailable (names the file / download
        and what to do), or random without ``allow_random_weights``.
    """

    def __init__(
        self,
        weights: str | None = "imagenet",
        allow_random_weights: bool = False,
        input_size: int = DEFAULT_SIZE,
        seed: int = 0,
    ):
        input_size = int(input_size)
        if input_size < MIN_SIZE:
            raise ValueError(
                f"inception: input_size {input_size} is below {MIN_SIZE}, the smallest InceptionV3 accepts"
            )
        weights = weights or ""
        check_weights_policy(weights, allow_random_weights)
        self.input_size = input_size
        self.random = not weights
        if weights == "imagenet":
            path, what = (
                self._download(),
                "the Keras ImageNet download",
            )  # fails fast, before building
        elif weights and not os.path.isfile(weights):
            raise InceptionWeightsError(
                f"config.eval.inception_weights: {weights} is not a file (expected {IMAGENET_FILE} "
                "or a .weights.h5 of keras.applications.InceptionV3 with its top)"
            )
        else:
            path, what = weights, weights
        model = keras.applications.InceptionV3(
            include_top=True,
            weights=None,
            input_shape=(input_size, input_size, 3),
            classifier_activation=None,
        )
        if weights:
            self._load(model, path, what)
            if weights == "imagenet":
                self.description, self.cache_tag = "imagenet", f"imagenet_{input_size}"
            else:
                self.description = f"file {os.path.abspath(weights)}"
                self.cache_tag = f"file-{_file_tag(weights)}_{input_size}"
        else:
            _randomize(model, seed)
            self.description = f"random (seed {seed})"
            self.cache_tag = f"random-s{seed}_{input_size}"
            logging.warning(
                "%s: Inception v3 has random weights (allow_random_weights); IS and FID are smoke-test numbers",
                RANDOM_WARNING,
            )
        self.comparable = not self.random and input_size == DEFAULT_SIZE
        self.warnings = []
        if self.random:
            self.warnings.append(RANDOM_WARNING)
        if input_size != DEFAULT_SIZE:
            self.warnings.append(SMALL_INPUT_WARNING.format(size=input_size))
        self.model = keras.Model(
            model.input,
            [model.get_layer("predictions").output, model.get_layer("avg_pool").output],
            name="inception_v3_features",
        )
        self._fn = tf.function(self._forward, reduce_retracing=True, autograph=False)

    @staticmethod
    def _download() -> str:
        try:
            return keras.utils.get_file(IMAGENET_FILE, IMAGENET_URL, cache_subdir="models", file_hash=IMAGENET_MD5)
        except Exception as e:  # urllib / socket / hash errors: all mean "no weights"
            raise InceptionWeightsError(
                f"could not download the ImageNet Inception v3 weights ({IMAGENET_URL}): "
                f"{type(e).__name__}: {e}. On an offline machine, copy {IMAGENET_FILE} from "
                "~/.keras/models of a connected one and pass its path as "
                "--config.eval.inception_weights=PATH (or --allow_random_weights for a smoke test)"
            ) from e

    @staticmethod
    def _load(model: keras.Model, path: str, what: str) -> None:
        try:
            model.load_weights(path)
        except Exception as e:  # h5py / Keras raise many types for a wrong or corrupt file
            raise InceptionWeightsError(
                f"could not load Inception v3 weights from {what}: {type(e).__name__}: {e} "
                "(expected keras.applications.InceptionV3 weights with the 1000-class top)"
            ) from e

    def _forward(self, images):
        x = tf.convert_to_tensor(images)
        if x.dtype == tf.uint8:
            x = tf.cast(x, tf.float32) / 127.5 - 1.0
        x = tf.image.resize(tf.cast(x, tf.float32), [self.input_size, self.input_size], method="bilinear")
        logits, pool = self.model(x, training=False)
        return tf.cast(logits, tf.float32), tf.cast(pool, tf.float32)

    def __call__(self, images):
        shape = tf.convert_to_tensor(images).shape
        if shape.rank != 4 or shape[-1] != 3:
            raise ValueError(f"inception: expected [B, H, W, 3] images, got shape {shape}")
        return self._fn(images)
