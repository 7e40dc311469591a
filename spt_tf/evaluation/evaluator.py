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

This module is the evaluation loop; the pieces it runs live in
:mod:`~spt_tf.evaluation.protocol` (rows, columns, mask size, thresholds),
:mod:`~spt_tf.evaluation.generators` (the networks, through
:mod:`spt_tf.predictor`), :mod:`~spt_tf.evaluation.feature_statistics` (FID),
:mod:`~spt_tf.evaluation.fid_cache` (the real statistics on disk),
:mod:`~spt_tf.evaluation.accumulators` (per-row totals) and
:mod:`~spt_tf.evaluation.report` (results.json, results.md, sample grids). Their
public names are importable from here as well.
"""

from __future__ import annotations

import os
import resource
import time

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from spt_tf import composite, memory
from spt_tf.data import formats, pipeline
from spt_tf.evaluation import fid_cache, metrics, report
from spt_tf.evaluation import inception as inception_lib
from spt_tf.evaluation import lpips as lpips_lib
from spt_tf.evaluation.accumulators import ImageRow
from spt_tf.evaluation.feature_statistics import (
    FeatureStatistics,
    fid,
    frechet_distance_low_rank,
)
from spt_tf.evaluation.fid_cache import CACHE_VERSION
from spt_tf.evaluation.generators import (
    Generator,
    checkpoint_generator,
    restore_human_parser,
    saved_model_generator,
)
from spt_tf.evaluation.protocol import (
    COLUMNS,
    FIELD_MASK_CLOSING,
    FIELD_MASK_HEIGHT,
    FIELD_MASK_RADIUS,
    IMAGE_METRICS,
    PARSING_METRICS,
    PCKH_THRESHOLD,
    PERSON_ONLY_ROWS,
    POSE_THRESHOLD,
    ROW_TITLES,
    ROWS,
    mask_parameters,
)
from spt_tf.evaluation.report import SAMPLES_PER_GRID, markdown, markdown_table
from spt_tf.networks import IncompleteCheckpointError

heatmaps_to_keypoints = metrics.heatmaps_to_keypoints

__all__ = [
    "CACHE_VERSION",
    "COLUMNS",
    "FIELD_MASK_CLOSING",
    "FIELD_MASK_HEIGHT",
    "FIELD_MASK_RADIUS",
    "IMAGE_METRICS",
    "PARSING_METRICS",
    "PCKH_THRESHOLD",
    "PERSON_ONLY_ROWS",
    "POSE_THRESHOLD",
    "ROWS",
    "ROW_TITLES",
    "SAMPLES_PER_GRID",
    "FeatureStatistics",
    "Generator",
    "IncompleteCheckpointError",
    "checkpoint_generator",
    "fid",
    "frechet_distance_low_rank",
    "heatmaps_to_keypoints",
    "markdown",
    "markdown_table",
    "mask_parameters",
    "restore_human_parser",
    "run",
    "saved_model_generator",
]


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
        raise FileNotFoundError(f"data.pairs_test: {path} does not exist (evaluation needs pairs with ground truth)")
    pairs = formats.read_pairs(path)
    return pairs[:max_pairs] if max_pairs else pairs


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
    skip_lpips: bool = False,
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
      skip_lpips: leave LPIPS out. It is also left out, with a note, for images
        smaller than AlexNet's 31x31; otherwise it needs ``config.eval.lpips_weights``
        (random weights only with ``allow_random_weights``, every output marked).
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
      lpips.LPIPSWeightsError: likewise for LPIPS.
      ValueError / FileNotFoundError: bad arguments, no checkpoint, no pairs,
        fewer pairs than IS splits.
    """
    t0 = time.time()
    if saved_model and (workdir or checkpoint):
        raise ValueError("evaluate: give a SavedModel or a workdir / checkpoint, not both")
    if not saved_model and not (workdir or checkpoint):
        raise ValueError("evaluate: give --workdir (latest checkpoint), --checkpoint or --saved_model")
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
    lpips_note = None
    use_lpips = not skip_lpips and min(h, w) >= lpips_lib.MIN_SIZE
    if skip_lpips:
        lpips_note = "LPIPS: skipped (--skip_lpips)"
    elif not use_lpips:
        lpips_note = (
            f"LPIPS: not computed, {h}x{w} images are smaller than AlexNet's {lpips_lib.MIN_SIZE}x{lpips_lib.MIN_SIZE}"
        )
    if use_inception:  # a refusal comes before anything is built or written
        inception_lib.check_weights_policy(config.eval.inception_weights, allow_random_weights)
    if use_lpips:
        lpips_lib.check_weights_policy(config.eval.get("lpips_weights", ""), allow_random_weights)
    if saved_model:
        gen = saved_model_generator(config, saved_model)
    else:
        gen = checkpoint_generator(config, workdir, checkpoint)
    inc = None
    if use_inception:
        inc = inception_lib.InceptionFeatures(config.eval.inception_weights, allow_random_weights, inception_size)
    lp = lpips_lib.LPIPS(config.eval.get("lpips_weights", ""), allow_random_weights) if use_lpips else None
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
    real_stats = None  # the real targets' FID statistics: from the cache, or computed below
    if use_inception:
        cache_dir = fid_cache_dir or os.path.dirname(os.path.abspath(out_dir))
        real_stats = fid_cache.real_statistics(cache_dir, config, split, pairs, inc.cache_tag)
    compute_real = real_stats is not None and real_stats.to_compute

    with_parser = parse is not None
    image_rows = ["model", "copy_source_image", "paint_true_parsing", "real_target"]
    if parsing_ok:
        image_rows.insert(1, "paint_predicted_parsing")
    rows = {
        name: ImageRow(use_inception and name not in PERSON_ONLY_ROWS, with_pose, n_pairs, splits, with_parser,
                       num_labels, person_only=name in PERSON_ONLY_ROWS, with_lpips=use_lpips)
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
    with tqdm(total=n_pairs, desc="evaluate", unit="pair", dynamic_ncols=True, mininterval=2.0) as bar:
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
                candidates["paint_predicted_parsing"] = metrics.paint_parsing(src_np, parsing_np, pred_np, num_labels)
            for name, row in rows.items():
                images = tf.convert_to_tensor(candidates[name])
                if not row.person_only:
                    row.ssim.update(ssim_fn(real, images).numpy())
                    row.mask_ssim.update(mask_ssim_fn(real, images, masks).numpy())
                    row.l1.update(metrics.l1_distance(images.numpy(), real_np))
                if row.lpips is not None:
                    row.lpips.update(lp(images.numpy(), real_np))
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
                real_stats.stats.update(inc(real)[1].numpy())
            conf["model"] += metrics.parsing_confusion(pred_np, tpar_np, num_labels)
            conf["copy_source_parsing"] += metrics.parsing_confusion(parsing_np, tpar_np, num_labels)
            if len(samples) < num_samples:
                k = min(num_samples - len(samples), int(src.shape[0]))
                samples.extend(report.sample_rows(src[:k], batch["target_pose"][:k], pred[:k], fake[:k], real[:k]))
            seen += int(src.shape[0])
            bar.update(int(src.shape[0]))
    if seen != n_pairs:
        raise RuntimeError(f"evaluate: the pipeline gave {seen} pairs, the pairs file {n_pairs}")
    if compute_real:
        real_stats.store()

    results = report.results(
        report.Measurements(
            config=config,
            split=split,
            generator=gen,
            inception=inc,
            lpips=lp,
            lpips_note=lpips_note,
            rows=rows,
            confusions=conf,
            real=real_stats,
            parser_note=parser_note,
            num_pairs=n_pairs,
            is_splits=splits,
            parsing_ok=parsing_ok,
            gt_parsing=gt_parsing,
            radius=radius,
            closing=closing,
        )
    )
    seconds = time.time() - t0
    results["seconds"] = seconds
    results["pairs_per_second"] = n_pairs / max(seconds, 1e-9)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    results["onednn_pool_allocator"] = memory.onednn_pool_allocator_in_use()
    results["malloc_limits"] = memory.malloc_limits()
    report.write_outputs(out_dir, results, samples, h)
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
