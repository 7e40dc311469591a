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

from spt_tf import composite, labels, memory, versions
from spt_tf import predictor as predictor_lib
from spt_tf.data import formats, pipeline
from spt_tf.evaluation import inception as inception_lib
from spt_tf.evaluation import metrics
from spt_tf.networks import IncompleteCheckpointError

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


class Generator:
    """A :class:`spt_tf.predictor.Predictor` on the evaluator's batches (tensors in, tensors out).

    Attributes:
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
        return heatmaps_to_keypoints(self.predictor.detect_heatmaps(np.asarray(images_u8)))


def checkpoint_generator(config, workdir: str | None, checkpoint: str | None = None) -> Generator:
    """H_S + H_A from a training checkpoint (the workdir's latest, or ``checkpoint``), with P when trained.

    Raises:
      IncompleteCheckpointError: the checkpoint lacks weights of H_S or H_A.
    """
    try:
        model = predictor_lib.from_workdir(workdir, config, checkpoint)
    except predictor_lib.ModelError as e:
        if "cannot restore" in str(e):
            raise IncompleteCheckpointError(str(e)) from None
        raise
    note = None
    if not model.can_detect:
        run_dir = workdir or os.path.dirname(os.path.dirname(os.path.abspath(model.source)))
        note = f"PCKh: no pose_detector checkpoint in {run_dir}: P is untrained, so PCKh is not computed"
        logging.warning("evaluate: %s", note)
    return Generator(model, note)


def saved_model_generator(config, path: str) -> Generator:
    """The exported SavedModel (a version directory, or the newest under a base). No pose detector.

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
    return Generator(model, "PCKh: not available with a SavedModel (it holds no pose detector P); evaluate a checkpoint")


def restore_human_parser(config, workdir: str):
    """The trained human parser of a training workdir, as a labels function; (None, why) without one.

    Returns:
      ``(fn, path)``: ``fn`` maps uint8 images [B, H, W, 3] to uint8 labels [B, H, W];
      or ``(None, reason)`` when ``WORKDIR/parser`` holds no checkpoint.
    """
    try:
        parser = predictor_lib.load_parser(workdir, config)
    except predictor_lib.ModelError as e:
        if "no human parser checkpoint" in str(e):
            return None, f"parser mIoU: {e}"
        raise IncompleteCheckpointError(str(e)) from None
    return parser.parse_labels, parser.source


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
        gen = saved_model_generator(config, saved_model)
    else:
        gen = checkpoint_generator(config, workdir, checkpoint)
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
    with_pose = gen.pose_trained
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
            src = composite.to_uint8(batch["image"])
            real = composite.to_uint8(batch["target_image"])
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
            "available": gen.pose_trained,
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
