"""`run(config, workdir, out_dir, ...)`: the streaming evaluator (docs/evaluation.md).

Generates the target of every test pair with the trained H_S + H_A (restored
from the latest joint / appearance checkpoint, or a SavedModel's
``serving_default``), and measures, in one pass over
:func:`spt_tf.data.pipeline.test_dataset`:

  * IS and mask-IS (Inception v3 logits of the generated images, plain and
    multiplied by the target's pose mask; ``config.eval.is_splits`` splits);
  * SSIM and mask-SSIM against the real target (the field's settings,
    :func:`spt_tf.evaluation.metrics.ssim_batch`), NaN values counted;
  * FID of the generated images against the real targets (2048-d pool
    features; the real statistics cached on disk per dataset, split, size,
    pairs and Inception weights);
  * L1 against the real target;
  * parsing mIoU and pixel accuracy of H_S's predicted map against the real
    target's parsing;
  * PCKh of the pose detector P on the generated images (checkpoints only:
    a SavedModel holds no P).

Two baselines in the same table, on the same pairs: "copy the source image"
(generated := source image: every image metric) and "copy the source parsing"
(predicted map := source map: mIoU, pixel accuracy).

Streaming: per batch only the images of that batch are alive. IS and mask-IS
are running sums per split (:class:`metrics.StreamingInceptionScore`: N is
known up front, so are the splits); what grows with the number of pairs N is,
while N <= 2048, the pool features themselves (for the exact low-rank FID,
:func:`frechet_distance_low_rank`); past 2048 only the O(D^2) running mean
and covariance remain.

Outputs in ``out_dir``: ``results.json``, ``results.md`` (the table),
``samples_NN.png`` (rows: source | target pose | predicted parsing | generated |
ground truth). See docs/evaluation.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import resource
import time

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from spt_tf import geometry, labels, memory
from spt_tf import models as spt_models
from spt_tf.data import formats, pipeline
from spt_tf.evaluation import inception as inception_lib
from spt_tf.evaluation import metrics
from spt_tf.export import module as export_module
from spt_tf.training import stages as stages_lib

ROWS = (
    "model", "paint_predicted_parsing", "paint_true_parsing", "copy_source_image", "copy_source_parsing",
    "real_target",
)  # fmt: skip
ROW_TITLES = {
    "model": "model",
    "paint_predicted_parsing": "paint the predicted parsing",
    "paint_true_parsing": "paint the true parsing",
    "copy_source_image": "copy the source image",
    "copy_source_parsing": "copy the source parsing",
    "real_target": "real target (ceiling)",
}
# Rows judged only on whether the image shows the target person (human parser, P).
PERSON_ONLY_ROWS = ("real_target",)
# (json key, markdown header) in table order.
COLUMNS = (
    ("is", "IS"),
    ("mask_is", "mask-IS"),
    ("ssim", "SSIM"),
    ("mask_ssim", "mask-SSIM"),
    ("fid", "FID"),
    ("l1", "L1"),
    ("miou", "mIoU"),
    ("pixel_accuracy", "pixel acc"),
    ("pckh", "PCKh"),
    ("parser_miou", "parser mIoU"),
)
IMAGE_METRICS = ("is", "mask_is", "ssim", "mask_ssim", "fid", "l1", "pckh", "parser_miou")
PARSING_METRICS = ("miou", "pixel_accuracy")

# The field's mask (PG2, Market-1501 at 128 x 64): disc radius 4, closing 5;
# other heights scale both by height / 128 (closing: the nearest odd size >= 1).
FIELD_MASK_HEIGHT = 128
FIELD_MASK_RADIUS = 4.0
FIELD_MASK_CLOSING = 5
POSE_THRESHOLD = metrics.POSE_THRESHOLD
heatmaps_to_keypoints = metrics.heatmaps_to_keypoints
PCKH_THRESHOLD = 0.5
SAMPLES_PER_GRID = 8
CACHE_VERSION = 1


# --------------------------------------------------------------------------- small helpers


def mask_parameters(height: int) -> tuple[float, int]:
    """(radius, closing) of the evaluation mask at image height ``height``.

    The field's values (radius 4, closing 5) belong to Market-1501's 128-pixel
    height; other sizes scale them by ``height / 128`` so the mask covers the
    same part of the body. Closing is rounded to the nearest odd size (an even
    square would shift the mask by half a pixel), at least 1 (no closing).
    """
    s = float(height) / FIELD_MASK_HEIGHT
    closing = int(2 * math.floor((FIELD_MASK_CLOSING * s - 1) / 2 + 0.5) + 1)
    return FIELD_MASK_RADIUS * s, max(1, closing)


def frechet_distance_low_rank(act_a, act_b) -> float:
    """FID of two activation sets, exact, without a D x D matrix square root.

    With A, B the centred activations [N, D], [M, D], S1 = AᵀA / (N - 1) and
    S2 = BᵀB / (M - 1): the non-zero eigenvalues of S1 S2 are those of
    (A Bᵀ)(A Bᵀ)ᵀ / ((N - 1)(M - 1)), so tr sqrt(S1 S2) is the sum of the
    singular values of the N x M matrix A Bᵀ over sqrt((N - 1)(M - 1)).
    Equal to :func:`metrics.fid_from_activations` for any N, M, D; cheap when
    N, M << D, which is also where scipy's ``sqrtm`` of the singular product
    is slow and needs its epsilon fix.

    Args:
      act_a: [N, D], act_b: [M, D] activations, N, M >= 2.

    Returns:
      The Frechet distance (float, >= 0 up to round-off).
    """
    a = np.asarray(act_a, np.float64)
    b = np.asarray(act_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"frechet_distance_low_rank: need [N >= 2, D] sets, got {a.shape}, {b.shape}"
        )
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt(na * nb)
    diff = mu_a - mu_b
    return float(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2.0 * cross)


class FeatureStatistics:
    """Streaming pool-feature statistics for FID.

    A :class:`metrics.RunningStatistics`, plus the activations themselves while
    there are at most ``dim`` of them (then :func:`frechet_distance_low_rank`
    is exact and fast); beyond that they are dropped and FID uses the mean and
    covariance (:func:`metrics.frechet_distance`). Memory: at most
    ``dim x dim`` float32 rows plus the O(dim^2) running sums.
    """

    def __init__(self, dim: int = inception_lib.POOL_DIM):
        self.dim = int(dim)
        self.running = metrics.RunningStatistics(self.dim)
        self._rows: list[np.ndarray] | None = []

    @property
    def count(self) -> int:
        return self.running.count

    def update(self, acts) -> None:
        a = np.asarray(acts, np.float32)
        self.running.update(a)
        if self._rows is not None:
            if self.running.count <= self.dim:
                self._rows.append(a.copy())
            else:
                self._rows = None

    def activations(self) -> np.ndarray | None:
        """[N, D] float32 while N <= dim, else None."""
        if self._rows is None:
            return None
        return np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim), np.float32)

    def save(self, path: str, meta: dict) -> None:
        mean, cov = self.running.statistics()
        acts = self.activations()
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        np.savez(
            tmp,
            mean=mean,
            cov=cov,
            count=np.int64(self.count),
            meta=json.dumps(meta, sort_keys=True),
            activations=acts if acts is not None else np.zeros((0, self.dim), np.float32),
            has_activations=np.bool_(acts is not None),
        )
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str) -> tuple[FeatureStatistics, dict]:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            mean, cov, count = z["mean"], z["cov"], int(z["count"])
            acts = z["activations"] if bool(z["has_activations"]) else None
        out = cls(mean.shape[0])
        r = out.running
        r.count, r._mean, r._m2 = (
            count,
            mean.astype(np.float64),
            cov.astype(np.float64) * (count - 1),
        )
        out._rows = [acts.astype(np.float32)] if acts is not None else None
        return out, meta


def fid(gen: FeatureStatistics, real: FeatureStatistics) -> float:
    """FID of two :class:`FeatureStatistics` (low-rank exact form when both kept their rows)."""
    a, b = gen.activations(), real.activations()
    if a is not None and b is not None:
        return frechet_distance_low_rank(a, b)
    return metrics.frechet_distance(*gen.running.statistics(), *real.running.statistics())


class _Mean:
    """Mean of a stream of per-example values; NaNs counted, not averaged."""

    def __init__(self):
        self.total, self.count, self.nan = 0.0, 0, 0

    def update(self, values) -> None:
        v = np.asarray(values, np.float64).ravel()
        bad = np.isnan(v)
        self.nan += int(bad.sum())
        self.total += float(v[~bad].sum())
        self.count += int((~bad).sum())

    def value(self) -> float | None:
        return self.total / self.count if self.count else None


class _ImageRow:
    """Accumulators of one table row judged on images (model or copy-source)."""

    def __init__(self, with_inception: bool, with_pose: bool, num_pairs: int, splits: int,
                 with_parser: bool = False, num_labels: int = 10, person_only: bool = False):  # fmt: skip
        self.person_only = bool(person_only)
        self.ssim, self.mask_ssim, self.l1 = _Mean(), _Mean(), _Mean()
        # IS and mask-IS as running sums (the logits are not kept: 4 KB a pair each).
        self.inception_score = self.mask_inception_score = None
        if with_inception:
            self.inception_score = metrics.StreamingInceptionScore(num_pairs, splits)
            self.mask_inception_score = metrics.StreamingInceptionScore(num_pairs, splits)
        self.features = FeatureStatistics() if with_inception else None
        self.pck = [0, 0] if with_pose else None
        # The human parser's labels of these images against the true target parsing.
        self.parser_confusion = np.zeros((num_labels, num_labels), np.int64) if with_parser else None


# --------------------------------------------------------------------------- generators


def _build_generators_and_detector(config):
    """H_S, H_A, P with their variables (the calls `training.loop.Networks` makes)."""
    h, w, n = int(config.data.height), int(config.data.width), int(config.model.num_labels)
    hs = spt_models.build_semantic_generator(config)
    ha = spt_models.build_appearance_generator(config)
    pd = spt_models.build_pose_detector(config)
    kp = tf.fill([1, geometry.NUM_KEYPOINTS, 2], -1.0)
    cond = geometry.pair_conditioning(kp, kp, h, w)
    par, img = tf.zeros([1, h, w, n]), tf.zeros([1, h, w, 3])
    pd(img)
    hs(
        stages_lib.hs_inputs(
            par, cond["source_pose"], cond["source_mask"], cond["target_pose"], cond["target_mask"]
        )
    )
    ha(
        stages_lib.ha_inputs(
            img,
            par,
            cond["source_pose"],
            par,
            cond["target_pose"],
            cond["transforms"],
            cond["part_masks"],
        )
    )
    return hs, ha, pd


def restore_human_parser(config, workdir: str):
    """The trained human parser of a training workdir, as a labels function; (None, why) without one.

    Returns:
      ``(fn, path)``: ``fn`` maps uint8 images [B, H, W, 3] to uint8 labels [B, H, W];
      or ``(None, reason)`` when ``WORKDIR/parser`` holds no checkpoint.
    """
    from spt_tf.models import human_parser
    from spt_tf.training.loop import variables_by_path

    ckpt_dir = os.path.join(workdir, "parser")
    path = tf.train.latest_checkpoint(ckpt_dir)
    if path is None:
        return None, (f"parser mIoU: no human parser checkpoint in {ckpt_dir} (train it with "
                      "`python train.py --stage=parser ...`)")  # fmt: skip
    h, w = int(config.data.height), int(config.data.width)
    net = spt_models.build_human_parser(config)
    net(tf.zeros([1, h, w, 3]))
    status = tf.train.Checkpoint(parser=variables_by_path(net)).restore(path)
    status.expect_partial()
    try:
        status.assert_existing_objects_matched()
    except AssertionError as e:
        raise IncompleteCheckpointError(f"{path}: the human parser does not match this config "
                                        f"({str(e).splitlines()[0]})") from None  # fmt: skip
    fn = tf.function(lambda x: human_parser.parse_labels(net, tf.cast(x, tf.float32) / 127.5 - 1.0),
                     reduce_retracing=True, autograph=False)  # fmt: skip
    logging.info("evaluate: human parser from %s", path)
    return (lambda images: fn(images).numpy()), path


class IncompleteCheckpointError(ValueError):
    """Some network weights cannot be restored: the network would run with random weights."""


def _check_reachable(root: tf.train.Checkpoint, networks: dict) -> None:
    """Raises unless every weight of ``networks`` is in ``root``'s object graph.

    ``assert_existing_objects_matched`` only speaks for the objects the
    checkpoint machinery can see; a Keras 3 layer held in a Python list is not
    one of them (``TrackedList`` is no TF trackable), so its variables would be
    neither saved nor restored, silently. This makes that loud.
    """
    reachable = {id(x) for x in tf.train.TrackableView(root).descendants()}
    for name, net in networks.items():
        missing = [w.path for w in net.weights if id(w) not in reachable]
        if missing:
            raise IncompleteCheckpointError(
                f"{name}: {len(missing)} of its {len(net.weights)} variables are invisible to "
                f"tf.train.Checkpoint (e.g. {missing[:3]}), so no checkpoint can hold or restore them "
                "and the network would run with random weights; likely layers kept in a Python list "
                "(Keras 3 TrackedList is not TF-trackable). Evaluate a SavedModel exported from the "
                "training process instead (--saved_model), or fix the checkpoint tracking"
            )


class CheckpointGenerator:
    """H_S + H_A (and P) restored from a training checkpoint.

    Generation goes through an in-memory :class:`SPTExportModule`, the code the
    SavedModel runs, so checkpoint and SavedModel results agree.
    """

    kind = "checkpoint"

    def __init__(self, config, workdir: str | None, checkpoint: str | None = None):
        path = checkpoint or export_module.latest_generator_checkpoint(workdir)
        hs, ha, pd = _build_generators_and_detector(config)
        from spt_tf.training.loop import variables_by_path

        # Path-keyed variable maps, as training writes them (every weight, lists included).
        root = tf.train.Checkpoint(
            hs=variables_by_path(hs), ha=variables_by_path(ha), pose_detector=variables_by_path(pd)
        )
        _check_reachable(root, {"H_S": hs, "H_A": ha, "pose detector P": pd})
        status = root.restore(path)
        status.expect_partial()
        try:
            status.assert_existing_objects_matched()
        except AssertionError as e:  # TF's message lists variable values: keep its first line
            raise IncompleteCheckpointError(
                f"{path}: the checkpoint lacks weights of H_S, H_A or P ({str(e).splitlines()[0]}); "
                "it was written by another config or code version, or holds other networks"
            ) from None
        logging.info("evaluate: restored H_S, H_A and P from %s", path)
        self.path = path
        self.module = export_module.SPTExportModule(hs, ha, config)
        self.pose_detector = pd
        # autograph=False: straight-line code, and AutoGraph cannot parse lambdas' source.
        self._pose_fn = tf.function(
            lambda x: pd(x, training=False), reduce_retracing=True, autograph=False
        )
        # The stage checkpoints hold P from the pose_detector stage when it ran; else P is random.
        run_dir = workdir or os.path.dirname(os.path.dirname(os.path.abspath(path)))
        self.pose_trained = (
            tf.train.latest_checkpoint(os.path.join(run_dir, "pose_detector")) is not None
        )
        self.pose_note = (
            None
            if self.pose_trained
            else (
                f"PCKh: no pose_detector checkpoint in {run_dir}: P is untrained, PCKh is meaningless"
            )
        )
        if self.pose_note:
            logging.warning("evaluate: %s", self.pose_note)

    def __call__(self, image, parsing, source_kp, target_kp, target_parsing=None) -> dict:
        if target_parsing is None:
            return self.module.serving_default(image, parsing, source_kp, target_kp)
        out = self.module.render(image, parsing, source_kp, target_kp, target_parsing)
        out["parsing"] = self.module.transform_parsing(parsing, source_kp, target_kp)["parsing"]
        return out

    def detect(self, images_u8) -> np.ndarray:
        """P's keypoints [B, 18, 2] on uint8 images."""
        x = tf.cast(images_u8, tf.float32) / 127.5 - 1.0
        return heatmaps_to_keypoints(self._pose_fn(x).numpy())


def resolve_saved_model(path: str) -> str:
    """A SavedModel directory, or the newest numbered version under an export base directory."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted(
        (int(d) for d in os.listdir(path) if re.fullmatch(r"\d+", d)) if os.path.isdir(path) else []
    )
    for v in reversed(versions):
        candidate = os.path.join(path, str(v))
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(
        f"--saved_model {path}: no saved_model.pb there nor in a numbered version directory below it"
    )


class SavedModelGenerator:
    """The exported SavedModel's ``serving_default`` (``render`` for TS-GT). No pose detector."""

    kind = "saved_model"
    pose_trained = False
    pose_note = (
        "PCKh: not available with a SavedModel (it holds no pose detector P); evaluate a checkpoint"
    )

    def __init__(self, config, path: str):
        self.path = resolve_saved_model(path)
        self._loaded = tf.saved_model.load(self.path)
        sigs = self._loaded.signatures
        for name in ("serving_default", "render", "transform_parsing"):
            if name not in sigs:
                raise ValueError(
                    f"{self.path}: SavedModel lacks the {name!r} signature (export with spt_tf.export)"
                )
        self._serve, self._render, self._parse = (
            sigs["serving_default"],
            sigs["render"],
            sigs["transform_parsing"],
        )
        shape = self._serve.structured_input_signature[1]["image"].shape
        want = [int(config.data.height), int(config.data.width)]
        if shape[1:3].as_list() != want:
            raise ValueError(
                f"{self.path}: SavedModel images are {shape[1]}x{shape[2]}, the config's "
                f"data.height x data.width is {want[0]}x{want[1]}; pass the config it was exported with"
            )
        logging.info("evaluate: SavedModel %s", self.path)

    def __call__(self, image, parsing, source_kp, target_kp, target_parsing=None) -> dict:
        kw = {
            "image": image,
            "parsing": parsing,
            "source_keypoints": source_kp,
            "target_keypoints": target_kp,
        }
        if target_parsing is None:
            return self._serve(**kw)
        out = dict(self._render(target_parsing=target_parsing, **kw))
        out["parsing"] = self._parse(
            parsing=parsing, source_keypoints=source_kp, target_keypoints=target_kp
        )["parsing"]
        return out

    def detect(self, images_u8):
        raise NotImplementedError(self.pose_note)


# --------------------------------------------------------------------------- run


def _split_config(config, split: str):
    """The config whose *test* fields point at ``split`` (test_dataset reads those)."""
    if split == "test":
        return config
    if split != "train":
        raise ValueError(f"split must be 'test' or 'train', got {split!r}")
    c = config.copy_and_resolve_references()
    c.data.annotations_test = config.data.annotations_train
    c.data.test_images = config.data.train_images
    c.data.pairs_test = config.data.pairs_train
    return c


def _pairs(config, max_pairs: int) -> list[tuple[str, str]]:
    path = formats.resolve(config.data.root, config.data.pairs_test)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"data.pairs_test: {path} does not exist (evaluation needs pairs with ground truth)"
        )
    pairs = formats.read_pairs(path)
    return pairs[:max_pairs] if max_pairs else pairs


def _to_uint8(images) -> tf.Tensor:
    """[-1, 1] float -> uint8 (the export's rounding)."""
    return tf.cast(
        tf.clip_by_value(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5), 0, 255), tf.uint8
    )


def _fid_cache_path(cache_dir, config, split, tag) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(config.data.name))
    return os.path.join(
        cache_dir, f"fid_stats_{name}_{split}_{config.data.height}x{config.data.width}_{tag}.npz"
    )


def _load_real_statistics(path: str, meta: dict) -> FeatureStatistics | None:
    if not os.path.isfile(path):
        logging.info("evaluate: no cached real FID statistics at %s; computing them", path)
        return None
    try:
        stats, cached = FeatureStatistics.load(path)
    except (OSError, ValueError, KeyError) as e:
        logging.warning("evaluate: unreadable FID statistics %s (%s); recomputing", path, e)
        return None
    if cached != meta:
        diff = sorted(k for k in set(cached) | set(meta) if cached.get(k) != meta.get(k))
        logging.info("evaluate: cached FID statistics %s differ in %s; recomputing", path, diff)
        return None
    logging.info("evaluate: real FID statistics from the cache %s", path)
    return stats


def run(
    config,
    workdir: str | None,
    out_dir: str,
    saved_model: str | None = None,
    checkpoint: str | None = None,
    max_pairs: int = 0,
    allow_random_weights: bool = False,
    split: str = "test",
    *,
    skip_inception: bool = False,
    inception_size: int = inception_lib.DEFAULT_SIZE,
    fid_cache_dir: str | None = None,
    num_samples: int = 16,
    batch_size: int | None = None,
    parser_workdir: str | None = None,
) -> dict:
    """Evaluates a trained model on the test pairs and writes results files.

    Args:
      config: the run config (data.*, model.*, eval.*: batch_size, max_pairs,
        inception_weights, is_splits).
      workdir: training workdir (latest joint / appearance checkpoint); also
        where P's training is looked up.
      out_dir: output folder (created): results.json, results.md, samples_NN.png.
      saved_model: a SavedModel version directory (or an export base folder:
        its newest version) to evaluate instead of a checkpoint.
      checkpoint: an explicit checkpoint path (overrides workdir's latest).
      max_pairs: evaluate the first N pairs; 0 = ``config.eval.max_pairs``
        (whose 0 means all).
      allow_random_weights: compute IS / FID with random Inception weights
        when ``config.eval.inception_weights`` is empty (every output marked).
      split: "test" (data.pairs_test) or "train" (data.pairs_train, the
        training images).
      skip_inception: leave IS, mask-IS and FID out (no Inception at all).
      inception_size: Inception input side; below 299 for tests only (marked
        as not comparable).
      fid_cache_dir: where the real FID statistics are cached (default: the
        parent of ``out_dir``).
      num_samples: rows of sample grids to write (8 per PNG).
      batch_size: default ``config.eval.batch_size``.
      parser_workdir: the training workdir whose human parser (``--stage=parser``)
        judges the generated images (parser mIoU); default ``workdir``.

    Returns:
      The results dict written to results.json.

    Raises:
      inception.InceptionWeightsError: no Inception weights and random ones not
        allowed (before anything else runs), or weights that cannot be loaded.
      ValueError / FileNotFoundError: bad arguments, no checkpoint, no pairs,
        fewer pairs than IS splits.
    """
    t0 = time.time()
    if saved_model and (workdir or checkpoint):
        raise ValueError("evaluate: give a SavedModel or a workdir / checkpoint, not both")
    if not saved_model and not (workdir or checkpoint):
        raise ValueError(
            "evaluate: give --workdir (latest checkpoint), --checkpoint or --saved_model"
        )
    data_config = _split_config(config, split)
    h, w, num_labels = int(config.data.height), int(config.data.width), int(config.model.num_labels)
    splits = int(config.eval.is_splits)
    max_pairs = int(max_pairs or config.eval.max_pairs or 0)
    batch_size = int(batch_size or config.eval.batch_size)
    pairs = _pairs(data_config, max_pairs)
    n_pairs = len(pairs)
    use_inception = not skip_inception
    if use_inception and n_pairs < max(splits, 2):
        raise ValueError(
            f"evaluate: {n_pairs} pairs for IS with {splits} splits (config.eval.is_splits) and FID "
            "(needs 2): evaluate more pairs, lower the splits, or --skip_inception"
        )
    if memory.onednn_pool_allocator_in_use() and n_pairs * h * w > 1000 * 128 * 128:
        logging.warning(
            "evaluate: oneDNN's pool allocator is in use, so resident memory will keep each "
            "batch's high-water mark and grow over %d pairs; run through evaluate.py, or set "
            "%s=1 before TensorFlow starts (spt_tf/memory.py)",
            n_pairs,
            memory.ONEDNN_SYSTEM_ALLOCATOR,
        )
    if (
        memory.malloc_limits() is None
        and not memory.user_tunes_malloc()
        and memory.malloc_stats_mb() is not None  # glibc
        and n_pairs * h * w > 1000 * 128 * 128
    ):
        logging.warning(
            "evaluate: glibc malloc keeps its default arenas and mmap threshold, so freed "
            "tensor buffers stay in the process and its peak creeps up over %d pairs; run "
            "through evaluate.py, or call spt_tf.memory.limit_malloc_retention() before "
            "TensorFlow starts",
            n_pairs,
        )
    if use_inception:  # a refusal comes before anything is built or written
        inception_lib.check_weights_policy(config.eval.inception_weights, allow_random_weights)
    if saved_model:
        gen = SavedModelGenerator(config, saved_model)
    else:
        gen = CheckpointGenerator(config, workdir, checkpoint)
    inc = None
    if use_inception:
        inc = inception_lib.InceptionFeatures(
            config.eval.inception_weights, allow_random_weights, inception_size
        )
    parse, parser_note = None, None
    if parser_workdir or workdir:
        parse, parser_info = restore_human_parser(config, parser_workdir or workdir)
        if parse is None:
            parser_note = parser_info
    else:
        parser_note = "parser mIoU: no human parser (give --parser_workdir, a workdir whose parser stage ran)"
    os.makedirs(out_dir, exist_ok=True)
    with_pose = gen.kind == "checkpoint"
    ablation = config.train.ablation
    gt_parsing = ablation == "ts_gt"
    parsing_ok = ablation != "baseline"

    radius, closing = mask_parameters(h)
    real_stats, real_status, cache_path = None, None, None
    pairs_sha1 = hashlib.sha1("\n".join(f"{a},{b}" for a, b in pairs).encode()).hexdigest()
    cache_meta = None
    if use_inception:
        cache_dir = fid_cache_dir or os.path.dirname(os.path.abspath(out_dir))
        os.makedirs(cache_dir, exist_ok=True)
        cache_path = _fid_cache_path(cache_dir, config, split, inc.cache_tag)
        cache_meta = {
            "version": CACHE_VERSION,
            "dataset": str(config.data.name),
            "split": split,
            "root": os.path.abspath(str(config.data.root)),
            "height": h,
            "width": w,
            "pairs_sha1": pairs_sha1,
            "num_pairs": n_pairs,
            "inception": inc.cache_tag,
        }
        real_stats = _load_real_statistics(cache_path, cache_meta)
        real_status = "cached" if real_stats is not None else "computed"
    compute_real = use_inception and real_stats is None
    if compute_real:
        real_stats = FeatureStatistics()

    with_parser = parse is not None
    image_rows = ["model", "copy_source_image", "paint_true_parsing", "real_target"]
    if parsing_ok:
        image_rows.insert(1, "paint_predicted_parsing")
    rows = {
        name: _ImageRow(use_inception and name not in PERSON_ONLY_ROWS, with_pose, n_pairs, splits, with_parser,
                        num_labels, person_only=name in PERSON_ONLY_ROWS)
        for name in image_rows
    }  # fmt: skip
    conf = {
        "model": np.zeros((num_labels, num_labels), np.int64),
        "copy_source_parsing": np.zeros((num_labels, num_labels), np.int64),
    }
    ssim_fn = tf.function(metrics.ssim_batch, reduce_retracing=True, autograph=False)
    mask_ssim_fn = tf.function(metrics.mask_ssim_batch, reduce_retracing=True, autograph=False)
    samples: list[np.ndarray] = []
    seen = 0

    ds = pipeline.test_dataset(
        data_config,
        batch_size=batch_size,
        max_pairs=max_pairs,
        buffer_batches=int(config.eval.get("buffer_batches", 0)),
    )
    with tqdm(
        total=n_pairs, desc="evaluate", unit="pair", dynamic_ncols=True, mininterval=2.0
    ) as bar:
        for batch in ds:
            src = _to_uint8(batch["image"])
            real = _to_uint8(batch["target_image"])
            parsing, tpar = batch["parsing"], batch["target_parsing"]
            skp, tkp = batch["keypoints"], batch["target_keypoints"]
            out = gen(src, parsing, skp, tkp, tpar if gt_parsing else None)
            fake, pred = out["image"], out["parsing"]
            masks = tf.constant(metrics.evaluation_masks(tkp, h, w, radius=radius, closing=closing))
            real_np, tkp_np, tpar_np = real.numpy(), tkp.numpy(), tpar.numpy()
            src_np, parsing_np, pred_np = src.numpy(), parsing.numpy(), pred.numpy()
            candidates = {
                "model": fake,
                "copy_source_image": src,
                "paint_true_parsing": metrics.paint_parsing(src_np, parsing_np, tpar_np, num_labels),
                "real_target": real,
            }
            if "paint_predicted_parsing" in rows:
                candidates["paint_predicted_parsing"] = metrics.paint_parsing(
                    src_np, parsing_np, pred_np, num_labels
                )
            for name, row in rows.items():
                images = tf.convert_to_tensor(candidates[name])
                if not row.person_only:
                    row.ssim.update(ssim_fn(real, images).numpy())
                    row.mask_ssim.update(mask_ssim_fn(real, images, masks).numpy())
                    row.l1.update(metrics.l1_distance(images.numpy(), real_np))
                if row.inception_score is not None:
                    masked = metrics.apply_mask(images, tf.cast(masks, tf.uint8))
                    logits, pool = inc(tf.concat([images, masked], 0))
                    n = int(images.shape[0])
                    row.inception_score.update(logits[:n].numpy())
                    row.mask_inception_score.update(logits[n:].numpy())
                    row.features.update(pool[:n].numpy())
                if row.pck is not None:
                    c, t = metrics.pckh_counts(gen.detect(images), tkp_np, PCKH_THRESHOLD)
                    row.pck[0] += int(c.sum())
                    row.pck[1] += int(t.sum())
                if row.parser_confusion is not None:
                    row.parser_confusion += metrics.parsing_confusion(parse(images), tpar_np, num_labels)
            if compute_real:
                real_stats.update(inc(real)[1].numpy())
            conf["model"] += metrics.parsing_confusion(pred_np, tpar_np, num_labels)
            conf["copy_source_parsing"] += metrics.parsing_confusion(parsing_np, tpar_np, num_labels)
            if len(samples) < num_samples:
                k = min(num_samples - len(samples), int(src.shape[0]))
                samples.extend(
                    _sample_rows(src[:k], batch["target_pose"][:k], pred[:k], fake[:k], real[:k])
                )
            seen += int(src.shape[0])
            bar.update(int(src.shape[0]))
    if seen != n_pairs:
        raise RuntimeError(f"evaluate: the pipeline gave {seen} pairs, the pairs file {n_pairs}")
    if compute_real:
        real_stats.save(cache_path, cache_meta)
        logging.info("evaluate: real FID statistics cached in %s", cache_path)

    results = _results(
        config,
        split,
        gen,
        inc,
        rows,
        conf,
        real_stats,
        parser_note,
        n_pairs,
        splits,
        parsing_ok,
        gt_parsing,
        radius,
        closing,
        cache_path,
        real_status,
    )
    seconds = time.time() - t0
    results["seconds"] = seconds
    results["pairs_per_second"] = n_pairs / max(seconds, 1e-9)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results["onednn_pool_allocator"] = memory.onednn_pool_allocator_in_use()
    results["malloc_limits"] = memory.malloc_limits()
    grids = _write_samples(out_dir, samples, h)
    results["samples"] = [os.path.basename(p) for p in grids]
    _write_outputs(out_dir, results)
    for warning in results["warnings"]:
        logging.warning("evaluate: %s", warning)
    logging.info(
        "evaluate: %d pairs in %.1f s; results in %s\n%s",
        n_pairs,
        seconds,
        out_dir,
        markdown_table(results),
    )
    return results


def _results(
    config,
    split,
    gen,
    inc,
    rows,
    conf,
    real_stats,
    parser_note,
    n_pairs,
    splits,
    parsing_ok,
    gt_parsing,
    radius,
    closing,
    cache_path,
    real_status,
) -> dict:
    notes, warnings = [], []
    if inc is not None:
        warnings.extend(inc.warnings)
    else:
        notes.append("IS, mask-IS, FID: skipped (--skip_inception)")
    if gen.pose_note:
        (notes if gen.kind == "saved_model" else warnings).append(gen.pose_note)
    if parser_note:
        notes.append(parser_note)
    notes.append(
        "paint the predicted / true parsing: the target parsing (H_S's prediction / the real "
        "target's) filled with the source image's mean colour per label; a generator below them "
        "has learnt no more than the colours of its parsing"
    )
    if not parsing_ok:
        notes.append("mIoU / pixel acc of the model: n/a (baseline ablation: H_A uses no parsing)")
    if gt_parsing:
        notes.append(
            "TS-GT ablation: H_A renders the real target parsing; mIoU / pixel acc are H_S's"
        )
    table = {}
    for name in ROWS:
        r = {k: None for k, _ in COLUMNS}
        table[name] = r
        if name in rows and not rows[name].person_only:
            row = rows[name]
            r["ssim"], r["ssim_nan"] = row.ssim.value(), row.ssim.nan
            r["mask_ssim"], r["mask_ssim_nan"] = row.mask_ssim.value(), row.mask_ssim.nan
            r["l1"] = row.l1.value()
            for key in ("ssim", "mask_ssim"):
                if r[f"{key}_nan"]:
                    notes.append(
                        f"{ROW_TITLES[name]}: {r[f'{key}_nan']} of {n_pairs} {key.replace('_', '-')} "
                        "values are NaN (both images flat) and left out of the mean"
                    )
            if inc is not None:
                r["is"], r["is_std"] = row.inception_score.result()
                r["mask_is"], r["mask_is_std"] = row.mask_inception_score.result()
                r["fid"] = fid(row.features, real_stats)
        if name in rows:
            row = rows[name]
            if row.pck is not None and row.pck[1]:
                r["pckh"] = row.pck[0] / row.pck[1]
            if row.parser_confusion is not None:
                r["parser_miou"] = metrics.miou_from_confusion(row.parser_confusion)
        if name in conf and (name != "model" or parsing_ok):
            r["miou"] = metrics.miou_from_confusion(conf[name])
            r["pixel_accuracy"] = metrics.pixel_accuracy_from_confusion(conf[name])
            r["iou_per_label"] = {
                labels.SPT_LABELS[i]: _num(v)
                for i, v in enumerate(metrics.iou_per_label(conf[name]))
            }
    out = {
        "warnings": warnings,
        "comparable": bool(inc is None or inc.comparable),
        "dataset": str(config.data.name),
        "split": split,
        "num_pairs": n_pairs,
        "image_size": [int(config.data.height), int(config.data.width)],
        "generator": {"kind": gen.kind, "path": gen.path, "ablation": str(config.train.ablation)},
        "inception": None
        if inc is None
        else {
            "weights": inc.description,
            "random": inc.random,
            "input_size": inc.input_size,
            "is_splits": splits,
            "fid_real_statistics": {
                "path": cache_path,
                "status": real_status,
                "count": real_stats.count,
            },
        },
        "ssim": {
            "sigma": metrics.SSIM_SIGMA,
            "sample_covariance": False,
            "data_range": "generated image",
            "images": "uint8",
        },
        "mask": {"radius": radius, "closing": closing, "keypoints": "target"},
        "pose_detector": {
            "available": gen.kind == "checkpoint",
            "trained": gen.pose_trained,
            "heatmap_threshold": POSE_THRESHOLD,
            "pckh_threshold": PCKH_THRESHOLD,
            "pckh_real_target": table["real_target"]["pckh"],
        },
        "rows": table,
        "notes": notes,
    }
    return _clean(out)


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _clean(x):
    """NaN / Inf -> None, numpy scalars -> Python (strict JSON)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _num(float(x))
    return x


# --------------------------------------------------------------------------- outputs


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    if key == "fid":
        s = f"{v:.2f}"
    elif key == "l1":
        s = f"{v:.4f}"
    else:
        s = f"{v:.3f}"
    if row.get(f"{key}_std") is not None:
        s += f" ± {row[f'{key}_std']:.3f}"
    if row.get(f"{key}_nan"):
        s += f" ({row[f'{key}_nan']} NaN)"
    return s


def markdown_table(results: dict) -> str:
    """The results table: rows model / baselines, columns of :data:`COLUMNS`."""
    lines = ["| | " + " | ".join(t for _, t in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name in ROWS:
        row = results["rows"][name]
        lines.append(
            f"| {ROW_TITLES[name]} | " + " | ".join(_cell(row, k) for k, _ in COLUMNS) + " |"
        )
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """results.md: header (pairs, weights status, conventions), table, notes."""
    r = results
    out = [f"# Evaluation: {r['dataset']} / {r['split']}", ""]
    for warning in r["warnings"]:
        out += [f"**{warning}**", ""]
    g = r["generator"]
    out.append(f"- pairs: {r['num_pairs']}, image size {r['image_size'][0]}x{r['image_size'][1]}")
    out.append(f"- generator: {g['kind']} `{g['path']}` (ablation {g['ablation']})")
    inc = r["inception"]
    if inc is None:
        out.append("- Inception: not run (IS, mask-IS, FID skipped)")
    else:
        fs = inc["fid_real_statistics"]
        out.append(
            f"- Inception v3 weights: {inc['weights']}, input {inc['input_size']}x{inc['input_size']}, "
            f"IS splits {inc['is_splits']}; real FID statistics {fs['status']} "
            f"(`{os.path.basename(fs['path'])}`)"
        )
    m, p = r["mask"], r["pose_detector"]
    out.append(
        f"- SSIM: Gaussian σ 1.5, population covariance, per channel, data range of the generated "
        f"image, uint8; masks: target pose, radius {m['radius']:g}, closing {m['closing']}"
    )
    if p["available"]:
        ref = "–" if p["pckh_real_target"] is None else f"{p['pckh_real_target']:.3f}"
        out.append(
            f"- PCKh@{p['pckh_threshold']:g} through the pose detector P (heatmap threshold "
            f"{p['heatmap_threshold']:g}); P on the real targets: {ref}"
        )
    out += ["", markdown_table(r), ""]
    if r["notes"]:
        out += ["Notes:", ""] + [f"- {n}" for n in r["notes"]] + [""]
    out.append(
        f"{r['seconds']:.1f} s, {r['pairs_per_second']:.2f} pairs/s, peak RSS {r['peak_rss_mb']:.0f} MB"
    )
    return "\n".join(out) + "\n"


def _write_outputs(out_dir: str, results: dict) -> None:
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, allow_nan=False)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(results))


def _sample_rows(src, target_pose, pred, fake, real) -> list[np.ndarray]:
    """[h, 5w, 3] uint8 rows: source | target pose | predicted parsing | generated | truth."""
    skel = (np.clip(tf.reduce_max(target_pose, -1).numpy(), 0, 1) * 255).astype(np.uint8)
    skel = np.repeat(skel[..., None], 3, -1)
    parsing = labels.colorize(pred.numpy()).astype(np.uint8)
    cols = [src.numpy(), skel, parsing, fake.numpy(), real.numpy()]
    return list(np.concatenate(cols, 2))


def _write_samples(out_dir: str, samples: list[np.ndarray], height: int) -> list[str]:
    scale = max(1, FIELD_MASK_HEIGHT // height)  # small images enlarged (nearest) to be visible
    paths = []
    for i in range(0, len(samples), SAMPLES_PER_GRID):
        grid = np.concatenate(samples[i : i + SAMPLES_PER_GRID], 0)
        grid = np.repeat(np.repeat(grid, scale, 0), scale, 1)
        path = os.path.join(out_dir, f"samples_{i // SAMPLES_PER_GRID:02d}.png")
        formats.write_image(path, grid)
        paths.append(path)
    return paths
