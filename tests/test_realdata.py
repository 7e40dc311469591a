"""The field's real files through the project's readers, and the geometry on real poses.

The files (Market-1501 and DeepFashion keypoints and pairs, the DeepFashion split
lists, the SPT authors' demo set, CIHP's LIP-20 label maps) are research-only: they
are read where they lie, outside the repository, and each test skips, naming the
missing path, when they are absent. Nothing here copies them or anything made from
them into the repository; the bad-row tests write their own small files to tmp_path.

The row counts are those of the files' own README.
"""

import functools
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from spt_tf import geometry, labels
from spt_tf.data import formats
from spt_tf.data.formats import FormatError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REALDATA = os.path.join(REPO, "..", "shared", "realdata")

MARKET_HW = (128, 64)
FASHION_HW = (256, 256)
FASHION_176_HW = (256, 176)
OFF = np.array([1.0, 0.0, geometry.OFF_IMAGE, 0.0, 1.0, geometry.OFF_IMAGE, 0.0, 0.0], np.float32)


def _real(*parts) -> str:
    path = os.path.normpath(os.path.join(REALDATA, *parts))
    if not os.path.exists(path):
        pytest.skip(f"real data not found: {path} (the field's files are read from ../shared/realdata)")
    return path


@functools.cache
def _annotations(rel: str, image_size=None, tolerance: float = 2.0) -> dict:
    return formats.read_annotations(_real(rel), image_size=image_size, tolerance=tolerance)


def _market_test():
    return _annotations("market/market-annotation-test.csv", MARKET_HW)


def _fashion_176():
    return _annotations("deepfashion/fasion-resize-annotation-test.csv", FASHION_176_HW,
                        formats.DEEPFASHION_176_TOLERANCE)  # fmt: skip


def _data_rows(path) -> int:
    """Non-blank lines after the header: what a reader must return, none dropped."""
    with open(path) as f:
        return sum(1 for line in f.read().splitlines()[1:] if line.strip())


def _all_missing(table: dict) -> list[str]:
    return [n for n, kp in table.items() if (kp == -1).all()]


# ------------------------------------------------------------------ Market-1501


@pytest.mark.parametrize(
    "split, rows, all_missing, junk, distractors",
    [("train", 12_936, 419, 0, 0), ("test", 19_732, 3_445, 3_819, 2_798)],
)
def test_market_annotations(split, rows, all_missing, junk, distractors):
    rel = f"market/market-annotation-{split}.csv"
    table = _annotations(rel, MARKET_HW)
    assert len(table) == rows == _data_rows(_real(rel))
    assert sum(n.startswith("-1_") for n in table) == junk
    assert sum(n.startswith("0000_") for n in table) == distractors
    empty = _all_missing(table)
    assert len(empty) == all_missing
    for name in empty:  # kept, as all -1 (y and x), not dropped
        np.testing.assert_array_equal(table[name], np.full((18, 2), -1, np.float32))
    kp = np.stack(list(table.values()))
    assert kp.dtype == np.float32 and kp.shape == (rows, 18, 2)
    vis = (kp != -1).all(-1)
    assert (kp[vis] == np.round(kp[vis])).all()  # the field's integers
    assert kp[vis][:, 0].max() <= 127 and kp[vis][:, 1].max() <= 63 and kp[vis].min() >= 0
    # Without the frame the reader returns the same rows.
    assert list(_annotations(rel)) == list(table)


def test_market_names_with_junk_and_distractor_prefixes():
    table = _market_test()
    from spt_tf.apps.keypoints import from_annotations  # the apps' --csv/--name path

    path = _real("market/market-annotation-test.csv")
    junk = next(n for n in table if n.startswith("-1_"))
    first = next(iter(table))
    assert first == "0000_c1s3_022226_03.jpg" and (table[first] == -1).all()
    for name in (junk, first, next(n for n in table if not n.startswith(("-1_", "0000_")))):
        np.testing.assert_array_equal(from_annotations(path, name), table[name])


def test_market_pairs():
    table = _market_test()
    pairs = formats.read_pairs(_real("market/market-pairs-test.csv"), known_names=table)
    assert len(pairs) == 12_000
    assert pairs[0] == ("0188_c2s2_149727_03.jpg", "0188_c4s6_008910_07.jpg")
    # The field's pairs join images of one identity, never a pose without keypoints.
    assert all(a.split("_")[0] == b.split("_")[0] for a, b in pairs)
    assert not {n for p in pairs for n in p} & set(_all_missing(table))


# ------------------------------------------------------------------ DeepFashion


def test_deepfashion_annotations_256():
    rel = "deepfashion/fasion-annotation-test.csv"
    table = _annotations(rel, FASHION_HW)
    assert len(table) == 4_038 == _data_rows(_real(rel))
    assert len(_all_missing(table)) == 619
    assert "fashionWOMENBlouses_Shirtsid0000337203_3back.jpg" in table
    pattern = re.compile(r"fashion(WO)?MEN[A-Za-z_]+id\d{10}_\d+[a-z]+\.jpg")
    assert all(pattern.fullmatch(n) for n in table)
    assert sum("Blouses_Shirts" in n for n in table) > 0


def test_deepfashion_176_resize_rule_file_needs_its_tolerance():
    """The field's 256x176 file holds 19 points up to 31 px left of / 30 px right of the frame.

    At the default tolerance it is refused, naming the first such row; with
    DEEPFASHION_176_TOLERANCE (the resize rule's 40 px crop) every row reads, and
    the points are kept as they are: exactly the 256x256 file's x - 40.
    """
    rel = "deepfashion/fasion-resize-annotation-test.csv"
    path = _real(rel)
    with pytest.raises(FormatError) as e:
        formats.read_annotations(path, image_size=FASHION_176_HW)
    assert (e.value.path, e.value.row, e.value.field) == (path, 12, "keypoints_x")
    assert "keypoint 3 coordinate -18 is outside the image [0, 175]" in str(e.value)
    # The farthest point (x = -31, row 1,515) is refused by any smaller tolerance.
    with pytest.raises(FormatError, match="row 1515, field 'keypoints_x'.*coordinate -31"):
        formats.read_annotations(path, image_size=FASHION_176_HW, tolerance=30.0)

    table = _fashion_176()
    assert len(table) == 4_038 == _data_rows(path)
    full = _annotations("deepfashion/fasion-annotation-test.csv", FASHION_HW)
    assert list(table) == list(full)
    kp, kp256 = np.stack(list(table.values())), np.stack(list(full.values()))
    vis = (kp != -1).all(-1)
    np.testing.assert_array_equal(vis, (kp256 != -1).all(-1))
    np.testing.assert_array_equal(kp[vis], kp256[vis] - np.array([0, 40], np.float32))
    x = kp[..., 1]
    outside = vis & ((x < 0) | (x > 175))
    assert outside.sum() == 19 and x[vis].min() == -31 and x[vis].max() == 205
    assert len(_all_missing(table)) == 619


def test_deepfashion_pairs_and_split_lists():
    table = _annotations("deepfashion/fasion-annotation-test.csv", FASHION_HW)
    test_names = formats.read_name_list(_real("deepfashion/test.lst"), known_names=table)
    train_names = formats.read_name_list(_real("deepfashion/train.lst"))
    assert len(test_names) == 4_038 and len(train_names) == 48_674
    assert set(test_names) == set(table)  # the annotation file covers the PATN/GFLA test split
    assert not set(train_names) & set(test_names)
    assert "fashionWOMENBlouses_Shirtsid0000069302_3back.jpg" in test_names
    pairs = formats.read_pairs(_real("deepfashion/fashion-pairs-test.csv"), known_names=set(test_names))
    assert len(pairs) == 8_570
    assert pairs[0] == ("fashionWOMENBlouses_Shirtsid0000337203_3back.jpg",
                        "fashionWOMENBlouses_Shirtsid0000337203_2side.jpg")  # fmt: skip
    assert not {n for p in pairs for n in p} & set(_all_missing(table))


# ------------------------------------------------------------------ SPT demo set


def test_spt_demo_set_images_keypoints_and_int8_int64_parsing():
    root = _real("spt_demo")
    table = formats.read_annotations(os.path.join(root, "keypoints.csv"), image_size=FASHION_HW)
    names = [f"{i}_{s}.jpg" for i in (1, 2, 3) for s in "AB"]
    assert sorted(table) == names
    dtypes = {}
    for name in names:
        img = formats.read_image(os.path.join(root, "imgs", name))
        assert img.shape == (256, 256, 3) and img.dtype == np.uint8
        path = formats.find_parsing(os.path.join(root, "parsing"), name)
        assert path.endswith(".npy")
        raw = np.load(path)
        dtypes[name] = raw.dtype
        lab = formats.read_parsing(path, shape=img.shape[:2])
        assert lab.dtype == np.uint8
        np.testing.assert_array_equal(lab, raw)  # the same labels, whatever the stored dtype
        assert lab.max() < labels.NUM_LABELS and lab.min() == 0
    assert {n for n, d in dtypes.items() if d == np.int64} == {"1_B.jpg", "3_B.jpg"}
    assert {n for n, d in dtypes.items() if d == np.int8} == set(names) - {"1_B.jpg", "3_B.jpg"}


def test_spt_demo_parsing_through_pipeline_and_pseudo_pair_loader():
    """The training pipeline's tf.data reader and the pseudo-pair CLI's loader agree on int64 maps."""
    from spt_tf.data import pipeline
    from spt_tf.data.pseudo_pairs.tables import load_dataset

    root = _real("spt_demo")
    paths = [os.path.join(root, "parsing", f"{i}_{s}.npy") for i in (1, 2, 3) for s in "AB"]
    ds = tf.data.Dataset.from_tensor_slices(paths).map(pipeline._read_label_file)
    for path, got in zip(paths, ds):
        np.testing.assert_array_equal(got.numpy()[..., 0], np.load(path))
    names, maps, kp = load_dataset(os.path.join(root, "keypoints.csv"), os.path.join(root, "parsing"),
                                   progress=False)  # fmt: skip
    assert maps.shape == (6, 256, 256) and maps.dtype == np.uint8 and kp.shape == (6, 18, 2)
    for name, m in zip(names, maps):
        np.testing.assert_array_equal(m, np.load(os.path.join(root, "parsing", name[:-4] + ".npy")))


# ------------------------------------------------------------------ CIHP (LIP-20)

# LIP labels present in each CIHP map, and the SPT labels they become.
CIHP = {
    "0002190": ({0, 2, 5, 10, 13, 15}, {0, 1, 2, 3, 4, 7}),
    "0005008": ({0, 1, 2, 5, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, set(range(10))),
    "0012008": ({0, 1, 2, 5, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19}, set(range(10))),
    "0026375": ({0, 2, 5, 13, 14, 15}, {0, 1, 2, 3, 6, 7}),
    "0032190": ({0, 1, 2, 5, 6, 9, 10, 13, 14, 15}, {0, 1, 2, 3, 4, 6, 7}),
}
SOCKS = labels.LIP_LABELS.index("socks")


def _png_colour_type(path) -> tuple[int, int]:
    """(bit depth, colour type) from a PNG's IHDR; (8, 0) is 8-bit grayscale (PIL mode L)."""
    with open(path, "rb") as f:
        head = f.read(26)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return head[24], head[25]


@pytest.mark.parametrize("stem", sorted(CIHP))
def test_cihp_lip_labels_to_spt(stem):
    from spt_tf.data import pipeline

    path = _real("cihp", "labels", f"{stem}.png")
    assert _png_colour_type(path) == (8, 0)
    image = formats.read_image(_real("cihp", "images", f"{stem}.jpg"))
    lip = formats.read_parsing(path, num_labels=labels.NUM_LIP_LABELS, shape=image.shape[:2])
    lip_set, spt_set = CIHP[stem]
    assert set(np.unique(lip).tolist()) == lip_set
    with pytest.raises(FormatError, match="label .* out of range 0..9"):
        formats.read_parsing(path)  # LIP maps are not SPT maps
    kp = None
    if SOCKS in lip_set:
        # Socks take the side of the nearer ankle: without keypoints that is refused.
        with pytest.raises(ValueError, match="glove/socks"):
            labels.lip_to_spt(lip)
        # Stand-in ankles (CIHP has no keypoints): the centres of the right / left shoes.
        kp = np.full((18, 2), -1, np.float32)
        for joint, shoe in ((10, "right_shoe"), (13, "left_shoe")):
            kp[joint] = np.argwhere(lip == labels.LIP_LABELS.index(shoe)).mean(0)
    spt = labels.lip_to_spt(lip, kp)
    assert spt.dtype == np.uint8 and spt.shape == lip.shape
    assert set(np.unique(spt).tolist()) == spt_set
    # Each non side-less LIP label lands on the table's SPT label.
    table = labels._table(None)
    for value in lip_set:
        sel = lip == value
        if table[value] >= 0:
            assert (spt[sel] == table[value]).all(), labels.LIP_LABELS[value]
        else:
            assert np.isin(spt[sel], [labels.LEFT_LEG, labels.RIGHT_LEG]).all()
    # The input pipeline's TF conversion gives the same map.
    tf_kp = np.full((18, 2), -1, np.float32) if kp is None else kp
    got = pipeline.lip_to_spt_tf(tf.constant(lip), tf.constant(tf_kp), tf.constant(table))
    np.testing.assert_array_equal(got.numpy(), spt)


# ------------------------------------------------------------------ bad rows (synthetic files)

HEADER = "name:keypoints_y:keypoints_x\n"


def _row(name, ys, xs):
    return f"{name}: [{', '.join(map(str, ys))}]: [{', '.join(map(str, xs))}]\n"


@pytest.mark.parametrize(
    "bad, field, words",
    [
        (_row("b.jpg", [10] * 17, [10] * 17), "keypoints_y", "expected 18 keypoints, got 17"),
        (_row("b.jpg", [10] * 18, [10] * 16 + ["abc", 10]), "keypoints_x", "value 16 is not a number"),
        (_row("b.jpg", [10] * 18, [10] * 17 + [216]), "keypoints_x", "coordinate 216 is outside"),
        (_row("b.jpg", [10] * 18, [-41] + [10] * 17), "keypoints_x", "coordinate -41 is outside"),
        (_row("b.jpg", [10] * 17 + [296], [10] * 18), "keypoints_y", "coordinate 296 is outside"),
    ],
)
def test_bad_annotation_row_names_file_row_field(tmp_path, bad, field, words):
    """At the 256x176 tolerance (40 px), a real-looking file with one bad third row."""
    good = _row("a.jpg", [10] * 18, [-40] + [10] * 16 + [215])  # within the tolerance
    path = tmp_path / "ann.csv"
    path.write_text(HEADER + good + _row("c.jpg", [-1] * 18, [-1] * 18) + bad)
    with pytest.raises(FormatError) as e:
        formats.read_annotations(path, image_size=FASHION_176_HW, tolerance=formats.DEEPFASHION_176_TOLERANCE)
    assert (e.value.path, e.value.row, e.value.field) == (str(path), 4, field)
    assert str(path) in str(e.value) and "row 4" in str(e.value) and words in str(e.value)
    report = []
    out = formats.read_annotations(path, image_size=FASHION_176_HW, skip_invalid=True, report=report,
                                   tolerance=formats.DEEPFASHION_176_TOLERANCE)  # fmt: skip
    assert list(out) == ["a.jpg", "c.jpg"] and [r.row for r in report] == [4]
    # Points within the tolerance are kept as they are, not clipped.
    assert out["a.jpg"][0, 1] == -40 and out["a.jpg"][17, 1] == 215
    assert (out["c.jpg"] == -1).all()


def test_corrupted_copy_of_a_real_file_drops_only_the_bad_row(tmp_path):
    """A temporary copy of the Market test annotations with one row broken: only that row goes."""
    src = _real("market/market-annotation-test.csv")
    lines = open(src).read().splitlines()
    row = 1_000  # 1-based line number
    name = lines[row - 1].split(":")[0]
    lines[row - 1] = lines[row - 1].replace("]: [", ", 7]: [", 1)  # 19 y values
    path = tmp_path / "market-annotation-test.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError) as e:
        formats.read_annotations(path)
    assert (e.value.row, e.value.field) == (row, "keypoints_y") and "got 19" in str(e.value)
    report = []
    out = formats.read_annotations(path, skip_invalid=True, report=report)
    assert len(out) == 19_731 and name not in out and [r.row for r in report] == [row]
    assert list(out) == [n for n in _market_test() if n != name]


def test_bad_pairs_and_name_list_rows(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("from,to\na.jpg,b.jpg\na.jpg,b.jpg,c.jpg\n")
    with pytest.raises(FormatError, match=r"pairs.csv, row 3: expected 2 columns"):
        formats.read_pairs(pairs)
    pairs.write_text("from,to\na.jpg,b.jpg\na.jpg,z.jpg\n")
    with pytest.raises(FormatError, match=r"row 3, field 'to': unknown image name 'z.jpg'"):
        formats.read_pairs(pairs, known_names={"a.jpg", "b.jpg"})
    lst = tmp_path / "test.lst"
    lst.write_text("a.jpg\nb.jpg\n\na.jpg\n")
    with pytest.raises(FormatError, match=r"test.lst, row 4, field 'name': duplicate name 'a.jpg' "
                                          r"\(first on row 1\)"):  # fmt: skip
        formats.read_name_list(lst)
    lst.write_text("a.jpg\r\n b.jpg \r\n")
    assert formats.read_name_list(lst) == ["a.jpg", "b.jpg"]
    with pytest.raises(FormatError, match=r"row 2, field 'name': unknown image name 'b.jpg'"):
        formats.read_name_list(lst, known_names={"a.jpg"})
    lst.write_text("a.jpg\nb.jpg: [1]\n")
    with pytest.raises(FormatError, match=r"row 2, field 'name'.*holds ':' or ','"):
        formats.read_name_list(lst)
    with pytest.raises(FormatError, match="nope.lst.*not found"):
        formats.read_name_list(tmp_path / "nope.lst")


# ------------------------------------------------------------------ geometry on real poses

SAMPLE = 200
_TORSO, _HEAD = list(geometry.TORSO), list(geometry.HEAD)
_FR = np.array([fr for fr, _, _, _ in geometry.LIMB_PARTS])
_TO = np.array([to for _, to, _, _ in geometry.LIMB_PARTS])
_MIRROR = np.array(geometry.MIRROR)


def part_missing(kp: np.ndarray) -> np.ndarray:
    """[N, 18, 2] -> [N, 10] bool: the joints that define the part are absent in this pose.

    Torso: any of its 4 joints; head: all 5 head joints; limb: either end.
    """
    vis = (kp != -1).all(-1)
    torso = ~vis[:, _TORSO].all(1)
    head = ~vis[:, _HEAD].any(1)
    limbs = ~(vis[:, _FR] & vis[:, _TO])
    return np.concatenate([torso[:, None], head[:, None], limbs], 1)


def _torso_fit_ok(src, tgt):
    """[N] bool: the least-squares fit of the 4 torso joints is not singular."""
    _, ok = geometry.fit_affine(tgt[:, _TORSO], src[:, _TORSO], np.ones((len(src), 4), np.float32))
    return ok.numpy()


def _has_scale(vis):
    return (vis[:, 8] & vis[:, 2]) | (vis[:, 11] & vis[:, 5])  # a hip-shoulder pair


def _pick_sample(src, tgt, extra=()):
    """Deterministic pair indices: the first pair of each missing-part case, then evenly spaced."""
    ms, mt = part_missing(src), part_missing(tgt)
    vs = (src != -1).all(-1)
    vt = (tgt != -1).all(-1)
    cases = [ms & ~mt, ~ms & mt, ms & mt]
    mirror_ok = vs[:, _MIRROR[_FR]] & vs[:, _MIRROR[_TO]]
    cases += [(ms[:, 2:] & ~mt[:, 2:] & mirror_ok), (ms[:, 2:] & ~mt[:, 2:] & ~mirror_ok)]
    head_apart = ~ms[:, 1] & ~mt[:, 1] & ~(vs[:, _HEAD] & vt[:, _HEAD]).any(1)
    picks = []
    for case in cases:
        for column in case.reshape(len(src), -1).T:
            hit = np.flatnonzero(column)
            if hit.size:
                picks.append(int(hit[0]))
    picks += [int(i) for i in np.flatnonzero(head_apart)[:2]] + list(extra)
    picks = list(dict.fromkeys(picks))
    rest = [int(i) for i in np.linspace(0, len(src) - 1, SAMPLE) if int(i) not in picks]
    return picks + rest[: SAMPLE - len(picks)]


def _conditioning_summary(src, tgt, h, w, xla, batch=50):
    """pair_conditioning in batches: per-pair finiteness per output, transforms, part-mask any/all."""

    @tf.function(jit_compile=xla)
    def run(s, t):
        out = geometry.pair_conditioning(s, t, h, w)
        finite = {k: tf.reduce_all(tf.math.is_finite(tf.reshape(v, [tf.shape(v)[0], -1])), 1)
                  for k, v in out.items()}  # fmt: skip
        masks = out["part_masks"] > 0
        return finite, out["transforms"], tf.reduce_any(masks, [2, 3]), tf.reduce_all(masks, [2, 3])

    chunks = [run(src[i : i + batch], tgt[i : i + batch]) for i in range(0, len(src), batch)]
    finite = {k: np.concatenate([c[0][k].numpy() for c in chunks]) for k in chunks[0][0]}
    return finite, *(np.concatenate([c[j].numpy() for c in chunks]) for j in (1, 2, 3))


def _apply(tr, yx):
    """Output (y, x) points [..., 2] -> the input points the transform [8] samples."""
    y, x = yx[..., 0], yx[..., 1]
    return np.stack([tr[3] * x + tr[4] * y + tr[5], tr[0] * x + tr[1] * y + tr[2]], -1)


def check_part_behaviour(src, tgt, transforms, mask_any, mask_all, h, w):
    """Asserts the documented behaviour of every part of every pair (geometry.part_transforms).

    Returns the number of pairs checked per (part, case) for the caller's coverage checks.
    """
    vs, vt = (src != -1).all(-1), (tgt != -1).all(-1)
    ms, mt = part_missing(src), part_missing(tgt)
    st_s, st_t = _has_scale(vs), _has_scale(vt)
    off = (transforms == OFF).all(-1)  # [N, 10]
    # Torso: needs all 4 joints in both poses and a fit that does not collapse it
    # (a side view's torso can be a line); its mask is all ones whatever the pose.
    np.testing.assert_array_equal(off[:, 0], ms[:, 0] | mt[:, 0] | ~_torso_fit_ok(src, tgt))
    assert mask_all[:, 0].all()
    # Head: needs a head joint present in both poses; its mask needs one in the target.
    common = (vs[:, _HEAD] & vt[:, _HEAD]).any(1)
    assert off[~common, 1].all()
    shoulders = vs[:, 2] & vs[:, 5] & vt[:, 2] & vt[:, 5]
    assert not off[common & shoulders, 1].any()
    np.testing.assert_array_equal(mask_any[:, 1], ~mt[:, 1] & st_t)
    # Limbs: a limb missing in the target samples nothing (off-image transform, empty
    # mask); missing in the source only, the mirrored source limb stands in.
    s_ok, t_ok = ~ms[:, 2:], ~mt[:, 2:]
    m_ok = vs[:, _MIRROR[_FR]] & vs[:, _MIRROR[_TO]]
    expect = t_ok & (s_ok | m_ok) & st_s[:, None] & st_t[:, None]
    np.testing.assert_array_equal(off[:, 2:], ~expect)
    ends_t = np.stack([tgt[:, _FR], tgt[:, _TO]], 2)  # [N, 8, 2 ends, (y, x)]
    own = np.stack([src[:, _FR], src[:, _TO]], 2)
    mirrored = np.stack([src[:, _MIRROR[_FR]], src[:, _MIRROR[_TO]]], 2)
    ends_s = np.where(s_ok[..., None, None], own, mirrored)
    for n, limb in zip(*np.nonzero(expect)):
        # Target limb -> source limb (rectangle onto rectangle): the joints map exactly.
        got = _apply(transforms[n, 2 + limb], ends_t[n, limb])
        np.testing.assert_allclose(got, ends_s[n, limb], atol=0.05, err_msg=geometry.PART_NAMES[2 + limb])
    inside = ((ends_t >= 0) & (ends_t <= np.array([h - 1, w - 1]))).all((-1, -2))
    limb_mask = t_ok & st_t[:, None]
    assert not mask_any[:, 2:][~limb_mask].any()
    assert mask_any[:, 2:][limb_mask & inside].all()
    return {
        "source only": (ms & ~mt).sum(0), "target only": (~ms & mt).sum(0), "both": (ms & mt).sum(0),
        "mirror used": (~s_ok & t_ok & m_ok).sum(0), "mirror missing too": (~s_ok & t_ok & ~m_ok).sum(0),
        "head apart": int((~ms[:, 1] & ~mt[:, 1] & ~common).sum()),
    }  # fmt: skip


def _pairs_arrays(table, pairs):
    return (np.stack([table[a] for a, _ in pairs]), np.stack([table[b] for _, b in pairs]))


def _with_empty_and_partial_poses(table, src, tgt):
    """Adds pairs of real rows not in the pairs file: all-missing and torso-less poses.

    The field's pairs never hold them, but the annotation files do, so the torso cases
    (and a pose with nothing) are checked on real rows too.
    """
    names = list(table)
    kp = np.stack([table[n] for n in names])
    miss = part_missing(kp)
    empty = kp[np.flatnonzero((kp == -1).all((1, 2)))[0]]
    partial = kp[np.flatnonzero(miss[:, 0] & ~(kp == -1).all((1, 2)))[0]]
    full = kp[np.flatnonzero(~miss.any(1))[0]]
    extra_s = np.stack([full, empty, empty, full, partial, partial])
    extra_t = np.stack([empty, full, empty, partial, full, partial])
    first = len(src)
    return (np.concatenate([src, extra_s]), np.concatenate([tgt, extra_t]),
            list(range(first, first + len(extra_s))))  # fmt: skip


@pytest.mark.parametrize("dataset", ["market", "deepfashion_176"])
def test_pair_conditioning_on_real_pairs(dataset):
    """A deterministic sample of the real test pairs covering every missing-part case."""
    if dataset == "market":
        table = _market_test()
        pairs = formats.read_pairs(_real("market/market-pairs-test.csv"), known_names=table)
        h, w = MARKET_HW
    else:
        table = _fashion_176()
        pairs = formats.read_pairs(_real("deepfashion/fashion-pairs-test.csv"), known_names=table)
        h, w = FASHION_176_HW
    src, tgt = _pairs_arrays(table, pairs)
    src, tgt, extra = _with_empty_and_partial_poses(table, src, tgt)
    outside_pairs = []
    if dataset != "market":  # pairs whose source or target has a point outside the 176 frame
        x_out = lambda kp: (((kp[..., 1] < 0) | (kp[..., 1] > w - 1)) & (kp != -1).all(-1)).any(-1)  # noqa: E731
        outside_pairs = [int(i) for i in np.flatnonzero(x_out(src) | x_out(tgt))[:6]]
        assert len(outside_pairs) == 6
    # Torsos present in both poses whose fit collapses (the side views' thin torsos).
    both = ~part_missing(src)[:, 0] & ~part_missing(tgt)[:, 0]
    singular = [int(i) for i in np.flatnonzero(both & ~_torso_fit_ok(src, tgt))]
    assert len(singular) == (1 if dataset == "market" else 0)
    idx = _pick_sample(src, tgt, extra + outside_pairs + singular)
    assert len(idx) == SAMPLE
    s, t = src[idx], tgt[idx]
    # Graph mode, and XLA as the input pipeline runs it by default (data.xla_geometry).
    for xla in (False, True):
        finite, transforms, mask_any, mask_all = _conditioning_summary(s, t, h, w, xla)
        for key, ok in finite.items():
            assert ok.all(), (xla, key, [idx[i] for i in np.flatnonzero(~ok)][:5])
        counts = check_part_behaviour(s, t, transforms, mask_any, mask_all, h, w)
    # Every case the data holds is in the sample: each part missing in the source only,
    # the target only, and both (torso only through the added rows).
    for case in ("source only", "target only", "both"):
        assert (counts[case] > 0).all(), (case, counts[case])
    assert (counts["mirror used"] > 0).all() and counts["mirror missing too"].sum() > 0
    if dataset == "market":
        assert counts["head apart"] > 0


def test_pose_without_body_scale_has_empty_head_and_limb_masks():
    """Real rows with head joints but no hip-shoulder pair: no head square of side 0.

    The head and limb masks are scaled by the shoulder-hip distance; without it they
    are empty (before, the head kept the pixels lying exactly on the head centre).
    """
    table = _annotations("deepfashion/fasion-annotation-test.csv", FASHION_HW)
    kp = np.stack(list(table.values()))
    vis = (kp != -1).all(-1)
    rows = np.flatnonzero(~_has_scale(vis) & vis[:, _HEAD].any(1))
    assert rows.size > 0
    kp = kp[rows[:16]]
    masks = geometry.part_masks(kp, *FASHION_HW).numpy()
    assert masks[:, 0].all() and not masks[:, 1:].any()
    # Its head still gets a transform from a pose that shares head joints and shoulders.
    tr = geometry.part_transforms(kp, kp).numpy()
    shoulders = vis[rows[:16]][:, [2, 5]].all(1)
    assert shoulders.any()
    assert not (tr[shoulders, 1] == OFF).all(-1).any()
    assert (tr[:, 2:] == OFF).all()
