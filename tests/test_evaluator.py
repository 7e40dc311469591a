"""Evaluator: end to end on the `trained` fixture (checkpoint and SavedModel), results files,
weights policy, baselines against independent references; the helpers on hand-made cases."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from skimage.metrics import structural_similarity

from spt_tf import evaluation
from spt_tf.data import pipeline
from spt_tf.evaluation import evaluator, metrics
from spt_tf.evaluation import inception as inception_lib

MAX_PAIRS = 6  # of the fixture's 12 test pairs: two batches of 4 and 2 (a partial last batch)
SIZE = 75  # smallest Inception input: fast on CPU (tests only)
_RUNS: dict = {}


def _run(trained, tmp_path_factory, kind, **kwargs):
    """One evaluator run per kind and trained workdir, shared by the tests of this file.

    The SavedModel run goes first and writes the real FID statistics; the
    checkpoint run reads them from the cache.
    """
    key = (trained["workdir"], kind)
    if key not in _RUNS:
        base = tmp_path_factory.getbasetemp() / "evaluator"
        out = str(base / kind)
        src = {"saved_model": trained["export"]} if kind == "saved_model" else {}
        results = evaluator.run(
            trained["config"],
            None if src else trained["workdir"],
            out,
            max_pairs=MAX_PAIRS,
            allow_random_weights=True,
            inception_size=SIZE,
            fid_cache_dir=str(base / "cache"),
            **src,
            **kwargs,
        )
        _RUNS[key] = (results, out)
    results, out = _RUNS[key]
    return results, out


@pytest.fixture
def sm_eval(trained, tmp_path_factory):
    return _run(trained, tmp_path_factory, "saved_model")


@pytest.fixture
def ckpt_eval(trained, tmp_path_factory, sm_eval):  # after the SavedModel run: its FID cache
    return _run(trained, tmp_path_factory, "checkpoint")


def _pairs_u8(config, n):
    """The first n test pairs as uint8 arrays (source, target, parsings, keypoints)."""
    out = {
        k: []
        for k in (
            "image",
            "target_image",
            "parsing",
            "target_parsing",
            "keypoints",
            "target_keypoints",
        )
    }
    for batch in pipeline.test_dataset(config, batch_size=4, max_pairs=n):
        for k in out:
            v = batch[k].numpy()
            if k in ("image", "target_image"):
                v = np.clip(np.round((v + 1.0) * 127.5), 0, 255).astype(np.uint8)
            out[k].append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def _field_ssim(real, fake):
    """scikit-image with the field's settings (PG2 / Def-GAN)."""
    return structural_similarity(
        real,
        fake,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=float(fake.max()) - float(fake.min()),
    )


# --------------------------------------------------------------------------- end to end


def test_refuses_is_fid_without_weights(trained, tmp_path):
    config = trained["config"]
    assert config.eval.inception_weights == ""
    out = tmp_path / "eval"
    with pytest.raises(inception_lib.InceptionWeightsError, match="allow_random_weights"):
        evaluator.run(config, trained["workdir"], str(out), max_pairs=MAX_PAIRS)
    assert not out.exists()  # refused before generating or writing anything


def test_results_files_parseable_with_baselines_and_marks(sm_eval, trained):
    results, out = sm_eval
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)  # strict JSON: no NaN
    assert saved == json.loads(json.dumps(results))
    assert saved["num_pairs"] == MAX_PAIRS  # of 12: max_pairs respected
    assert saved["inception"]["fid_real_statistics"]["count"] == MAX_PAIRS
    assert saved["inception"]["fid_real_statistics"]["status"] == "computed"
    assert inception_lib.RANDOM_WARNING in saved["warnings"]
    assert saved["comparable"] is False
    assert saved["malloc_limits"] is None  # pytest's process leaves glibc malloc as it is
    rows = saved["rows"]
    assert set(rows) == set(evaluator.ROWS)
    for name in ("model", "copy_source_image", "paint_predicted_parsing", "paint_true_parsing"):
        for key in ("is", "mask_is", "ssim", "mask_ssim", "fid", "l1"):
            assert math.isfinite(rows[name][key]), (name, key)
        assert 1.0 <= rows[name]["is"] <= MAX_PAIRS / 2  # at most the examples per split
        assert rows[name]["fid"] >= -1e-6
        assert rows[name]["pckh"] is None  # no P in a SavedModel
    # Calibrated random weights: IS not stuck at 1, so the IS comparisons below can fail.
    assert rows["copy_source_image"]["is"] > 1.01
    assert rows["copy_source_image"]["miou"] is None
    assert rows["copy_source_parsing"]["ssim"] is None and rows["copy_source_parsing"]["is"] is None
    # The real targets are judged only as people (P, the human parser): none here (SavedModel, no parser).
    assert all(v is None for k, v in rows["real_target"].items() if k in dict(evaluator.COLUMNS))
    assert any("parser mIoU: no human parser" in n for n in saved["notes"])
    for name in ("model", "copy_source_parsing"):
        assert 0.0 <= rows[name]["miou"] <= 1.0 and 0.0 <= rows[name]["pixel_accuracy"] <= 1.0
    assert any("not available with a SavedModel" in n for n in saved["notes"])
    md = open(os.path.join(out, "results.md")).read()
    assert f"**{inception_lib.RANDOM_WARNING}**" in md
    for title in (
        "| model |",
        "| copy the source image |",
        "| copy the source parsing |",
        "| paint the predicted parsing |",
        "| paint the true parsing |",
        "| real target (ceiling) |",
        "parser mIoU",
        "mask-SSIM",
        "PCKh",
        "not available with a SavedModel",
    ):
        assert title in md
    assert f"pairs: {MAX_PAIRS}" in md
    # One grid: 6 rows of source | pose | parsing | generated | truth, enlarged 4x (32x16 images).
    assert saved["samples"] == ["samples_00.png"]
    grid = tf.io.decode_png(tf.io.read_file(os.path.join(out, "samples_00.png"))).numpy()
    assert grid.shape == (MAX_PAIRS * 32 * 4, 5 * 16 * 4, 3)


def test_copy_source_baselines_match_direct_computation(sm_eval, trained):
    results, _ = sm_eval
    d = _pairs_u8(trained["config"], MAX_PAIRS)
    src, real = d["image"], d["target_image"]
    row = results["rows"]["copy_source_image"]
    ssim = [_field_ssim(real[i], src[i]) for i in range(MAX_PAIRS)]
    assert row["ssim_nan"] == 0
    np.testing.assert_allclose(row["ssim"], np.mean(ssim), atol=1e-4)
    radius, closing = evaluator.mask_parameters(32)
    masks = metrics.evaluation_masks(d["target_keypoints"], 32, 16, radius=radius, closing=closing) > 0
    mssim = [_field_ssim(real[i] * masks[i], src[i] * masks[i]) for i in range(MAX_PAIRS)]
    np.testing.assert_allclose(row["mask_ssim"], np.mean(mssim), atol=1e-4)
    l1 = np.abs(src.astype(float) - real.astype(float)).mean() / 255.0
    np.testing.assert_allclose(row["l1"], l1, rtol=1e-9)
    # Copy the source parsing: accuracy and IoUs counted by hand.
    p, t = d["parsing"], d["target_parsing"]
    par = results["rows"]["copy_source_parsing"]
    np.testing.assert_allclose(par["pixel_accuracy"], np.mean(p == t), rtol=1e-12)
    ious = [np.sum((p == k) & (t == k)) / np.sum((p == k) | (t == k)) for k in range(10) if np.any((p == k) | (t == k))]
    np.testing.assert_allclose(par["miou"], np.mean(ious), rtol=1e-12)


def test_paint_baselines_match_direct_computation(sm_eval, trained):
    """The paint rows: metrics.paint_parsing of the true / H_S-predicted target parsing."""
    results, _ = sm_eval
    d = _pairs_u8(trained["config"], MAX_PAIRS)
    src, real = d["image"], d["target_image"]
    loaded = tf.saved_model.load(trained["export"])
    predicted = loaded.signatures["transform_parsing"](
        parsing=tf.constant(d["parsing"]), source_keypoints=tf.constant(d["keypoints"]),
        target_keypoints=tf.constant(d["target_keypoints"]),
    )["parsing"].numpy()  # fmt: skip
    for name, target_parsing in (("paint_true_parsing", d["target_parsing"]), ("paint_predicted_parsing", predicted)):
        painted = metrics.paint_parsing(src, d["parsing"], target_parsing)
        row = results["rows"][name]
        ssim = [_field_ssim(real[i], painted[i]) for i in range(MAX_PAIRS)]
        np.testing.assert_allclose(row["ssim"], np.nanmean(ssim), atol=1e-4)
        l1 = np.abs(painted.astype(float) - real.astype(float)).mean() / 255.0
        np.testing.assert_allclose(row["l1"], l1, rtol=1e-9)
        assert row["miou"] is None


def test_copy_source_is_and_mask_is_equal_the_batch_function(sm_eval, trained, random_inception):
    # The evaluator streams IS (running sums per split); here all the logits at once.
    results, _ = sm_eval
    d = _pairs_u8(trained["config"], MAX_PAIRS)
    src = d["image"]
    h, w = src.shape[1:3]
    radius, closing = evaluator.mask_parameters(h)
    masks = metrics.evaluation_masks(d["target_keypoints"], h, w, radius=radius, closing=closing)
    masked = metrics.apply_mask(tf.constant(src), tf.cast(masks, tf.uint8))
    splits = int(trained["config"].eval.is_splits)
    row = results["rows"]["copy_source_image"]
    for key, images in (("is", src), ("mask_is", masked)):
        mean, std = metrics.inception_score_from_logits(random_inception(images)[0].numpy(), splits)
        np.testing.assert_allclose(row[key], mean, rtol=1e-4)
        np.testing.assert_allclose(row[f"{key}_std"], std, rtol=1e-3, atol=1e-6)


def test_checkpoint_matches_saved_model(ckpt_eval, sm_eval):
    ck, out = ckpt_eval
    sm, _ = sm_eval
    assert ck["num_pairs"] == MAX_PAIRS and ck["generator"]["kind"] == "checkpoint"
    assert ck["inception"]["fid_real_statistics"]["status"] == "cached"  # written by the SavedModel run
    for name in ("model", "copy_source_image", "copy_source_parsing"):
        for key in ("is", "mask_is", "ssim", "mask_ssim", "fid", "l1", "miou", "pixel_accuracy"):
            a, b = ck["rows"][name][key], sm["rows"][name][key]
            assert (a is None) == (b is None), (name, key)
            if a is not None:
                # Same graph; uint8 rounding of float noise may move a pixel by one level.
                np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3, err_msg=f"{name} {key}")
    for name in ("model", "copy_source_image"):
        assert 0.0 <= ck["rows"][name]["pckh"] <= 1.0
    assert ck["pose_detector"]["available"] and ck["pose_detector"]["trained"]
    assert "P on the real targets" in open(os.path.join(out, "results.md")).read()


def test_incomplete_checkpoint_is_refused(trained, tmp_path):
    """A checkpoint without H_A / P (here: only H_S saved) is an error, not random networks."""
    from spt_tf import networks

    hs = networks.build(trained["config"], "hs")
    root = tf.train.Checkpoint(hs=networks.variables_by_path(hs))
    path = tf.train.CheckpointManager(root, str(tmp_path / "partial" / "appearance"), 1).save()
    with pytest.raises(evaluator.IncompleteCheckpointError, match="lacks weights"):
        evaluator.checkpoint_generator(trained["config"], None, path)


def test_model_row_against_saved_model_outputs(sm_eval, trained):
    """The model row's SSIM / L1 / pixel accuracy from the SavedModel's outputs, computed here."""
    results, _ = sm_eval
    d = _pairs_u8(trained["config"], MAX_PAIRS)
    fn = tf.saved_model.load(trained["export"]).signatures["serving_default"]
    out = fn(
        image=tf.constant(d["image"]),
        parsing=tf.constant(d["parsing"]),
        source_keypoints=tf.constant(d["keypoints"]),
        target_keypoints=tf.constant(d["target_keypoints"]),
    )
    fake, pred = out["image"].numpy(), out["parsing"].numpy()
    row = results["rows"]["model"]
    ssim = np.array([_field_ssim(d["target_image"][i], fake[i]) for i in range(MAX_PAIRS)])
    assert row["ssim_nan"] == int(np.isnan(ssim).sum())
    np.testing.assert_allclose(row["ssim"], np.nanmean(ssim), atol=1e-4)
    l1 = np.abs(fake.astype(float) - d["target_image"].astype(float)).mean() / 255.0
    np.testing.assert_allclose(row["l1"], l1, rtol=1e-9)
    np.testing.assert_allclose(row["pixel_accuracy"], np.mean(pred == d["target_parsing"]), rtol=1e-12)


def test_skip_inception_and_ts_gt(trained, tmp_path):
    config = trained["config"].copy_and_resolve_references()
    config.train.ablation = "ts_gt"
    r = evaluator.run(
        config,
        None,
        str(tmp_path),
        saved_model=os.path.dirname(trained["export"]),
        max_pairs=3,
        skip_inception=True,
    )
    assert r["num_pairs"] == 3 and r["inception"] is None
    assert r["generator"]["path"] == trained["export"]  # the newest version under the export base
    assert r["rows"]["model"]["is"] is None and r["rows"]["model"]["fid"] is None
    assert math.isfinite(r["rows"]["model"]["ssim"])
    assert any("TS-GT" in n for n in r["notes"]) and any("skipped" in n for n in r["notes"])
    assert r["warnings"] == []


def test_rejects_bad_arguments(trained, tmp_path):
    config = trained["config"]
    with pytest.raises(ValueError, match="not both"):
        evaluator.run(config, trained["workdir"], str(tmp_path), saved_model=trained["export"])
    with pytest.raises(ValueError, match="splits"):
        evaluator.run(config, trained["workdir"], str(tmp_path), max_pairs=1, allow_random_weights=True)
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        evaluator.saved_model_generator(config, str(tmp_path))


def test_lpips_needs_weights_or_permission_and_skips_small_images(trained, tmp_path):
    """LPIPS at a size AlexNet can read is refused without weights, before anything is built;
    below 31x31 it is left out with a note; --skip_lpips leaves it out."""
    from spt_tf.evaluation import lpips

    config = trained["config"].copy_and_resolve_references()
    config.data.height, config.data.width = 64, 32
    with pytest.raises(lpips.LPIPSWeightsError, match="lpips"):
        evaluator.run(config, trained["workdir"], str(tmp_path / "refused"), max_pairs=2, skip_inception=True)
    assert not os.path.exists(tmp_path / "refused")
    small = evaluator.run(trained["config"], trained["workdir"], str(tmp_path / "small"), max_pairs=2,
                          skip_inception=True, allow_random_weights=True)  # fmt: skip
    assert small["lpips"] is None and small["rows"]["model"]["lpips"] is None
    assert any("smaller than AlexNet" in n for n in small["notes"])


# --------------------------------------------------------------------------- helpers


def test_mask_parameters_scale_from_market():
    assert evaluator.mask_parameters(128) == (4.0, 5)  # the field's values at Market's height
    assert evaluator.mask_parameters(64) == (2.0, 3)
    assert evaluator.mask_parameters(32) == (1.0, 1)
    assert evaluator.mask_parameters(256) == (8.0, 11)


def test_heatmaps_to_keypoints_hand_made():
    hm = np.zeros((1, 8, 6, 18), np.float32)
    hm[0, 2, 5, 0] = 0.9  # joint 0 at (y 2, x 5)
    hm[0, 7, 0, 1] = 0.5
    hm[0, 3, 3, 1] = 0.4  # lower peak ignored
    hm[0, 4, 4, 2] = 0.05  # below the threshold: missing
    kp = evaluator.heatmaps_to_keypoints(hm, threshold=0.1)
    assert kp.shape == (1, 18, 2)
    np.testing.assert_array_equal(kp[0, 0], [2, 5])
    np.testing.assert_array_equal(kp[0, 1], [7, 0])
    np.testing.assert_array_equal(kp[0, 2:], -1)


@pytest.mark.parametrize("n, m, d", [(60, 45, 8), (5, 7, 40)])
def test_low_rank_fid_equals_references(n, m, d):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 0.3
    b = rng.standard_normal((m, d)) * 1.5 - 0.2
    got = evaluator.frechet_distance_low_rank(a, b)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Reference: trace of sqrt(S1 S2) from its eigenvalues (real, >= 0 up to round-off).
    ev = np.linalg.eigvals(s1 @ s2)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.abs(ev)).sum()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    if n > d and m > d:  # full rank: scipy's sqrtm route is accurate
        np.testing.assert_allclose(got, metrics.fid_from_activations(a, b), rtol=1e-8)


def test_feature_statistics_keep_drop_and_cache(tmp_path):
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((9, 4)).astype(np.float32)
    real = rng.standard_normal((9, 4)).astype(np.float32) + 1.0
    s, r = evaluator.FeatureStatistics(4), evaluator.FeatureStatistics(4)
    s.update(acts[:3])
    r.update(real[:3])
    np.testing.assert_array_equal(s.activations(), acts[:3])  # rows kept while n <= dim
    np.testing.assert_allclose(evaluator.fid(s, r), metrics.fid_from_activations(acts[:3], real[:3]), rtol=1e-5)
    s.update(acts[3:])
    r.update(real[3:])
    assert s.activations() is None and s.count == 9  # dropped past dim: mean / covariance only
    np.testing.assert_allclose(evaluator.fid(s, r), metrics.fid_from_activations(acts, real), rtol=1e-6)
    path = str(tmp_path / "stats.npz")
    r.save(path, {"a": 1})
    loaded, meta = evaluator.FeatureStatistics.load(path)
    assert meta == {"a": 1} and loaded.count == 9
    np.testing.assert_allclose(evaluator.fid(s, loaded), evaluator.fid(s, r), rtol=1e-12)


# --------------------------------------------------------------------------- Inception


@pytest.fixture(scope="module")
def random_inception():
    return inception_lib.InceptionFeatures("", allow_random_weights=True, input_size=SIZE)


def test_inception_random_weights_marked_and_deterministic(random_inception, tmp_path):
    inc = random_inception
    assert inc.random and not inc.comparable
    assert inception_lib.RANDOM_WARNING in inc.warnings and len(inc.warnings) == 2  # + small input
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 32, 16, 3), dtype=np.uint8)
    logits, pool = inc(images)
    assert logits.shape == (3, inception_lib.NUM_CLASSES) and pool.shape == (
        3,
        inception_lib.POOL_DIM,
    )
    assert np.isfinite(logits.numpy()).all() and np.std(pool.numpy()) > 0
    # Float input in [-1, 1] gives the same features as uint8.
    logits_f, _ = inc(images.astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(logits_f.numpy(), logits.numpy(), rtol=1e-4, atol=1e-3)
    # A weights file: loads the same network (and is not "random").
    path = str(tmp_path / "inception.weights.h5")
    inc.model.save_weights(path)
    from_file = inception_lib.InceptionFeatures(path, input_size=SIZE)
    assert not from_file.random and from_file.warnings == [inception_lib.SMALL_INPUT_WARNING.format(size=SIZE)]
    np.testing.assert_allclose(from_file(images)[0].numpy(), logits.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(inception_lib.InceptionWeightsError, match="not a file"):
        inception_lib.InceptionFeatures(str(tmp_path / "missing.h5"), input_size=SIZE)


def test_parser_miou_and_real_target_ceiling(trained, tmp_path):
    """With a trained human parser in the workdir: parser mIoU per row, the real targets' as ceiling."""
    import shutil

    from spt_tf.training import loop

    config = trained["config"]
    workdir = str(tmp_path / "workdir")
    shutil.copytree(trained["workdir"], workdir)
    loop.train_stage(config, workdir, "parser", validators=evaluation.stage_validators())
    results = evaluator.run(config, workdir, str(tmp_path / "eval"), max_pairs=MAX_PAIRS, skip_inception=True)
    rows = results["rows"]
    for name in ("model", "paint_predicted_parsing", "paint_true_parsing", "copy_source_image", "real_target"):
        assert 0.0 <= rows[name]["parser_miou"] <= 1.0, name
    assert rows["real_target"]["ssim"] is None and rows["real_target"]["l1"] is None
    assert rows["real_target"]["pckh"] == results["pose_detector"]["pckh_real_target"]
    # The ceiling row, recomputed: the workdir's parser on the real targets against their parsing.
    parse, _ = evaluator.restore_human_parser(config, workdir)
    d = _pairs_u8(config, MAX_PAIRS)
    conf = metrics.parsing_confusion(parse(tf.constant(d["target_image"])), d["target_parsing"], 10)
    np.testing.assert_allclose(rows["real_target"]["parser_miou"], metrics.miou_from_confusion(conf), rtol=1e-12)
