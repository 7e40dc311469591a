"""Tests of spt_tf.labels: the LIP -> SPT decision of docs/data.md, sides, colours."""

import numpy as np
import pytest

from spt_tf import labels

# The decision of docs/data.md, written out again by name: LIP label -> SPT label.
EXPECTED = {
    "background": "background", "hat": "hair", "hair": "hair", "sunglasses": "face",
    "upper_clothes": "upper_clothes", "dress": "upper_clothes", "coat": "upper_clothes",
    "pants": "pants", "jumpsuits": "pants", "scarf": "upper_clothes", "skirt": "skirt",
    "face": "face", "left_arm": "left_arm", "right_arm": "right_arm", "left_leg": "left_leg",
    "right_leg": "right_leg", "left_shoe": "left_leg", "right_shoe": "right_leg",
}  # fmt: skip
LIP_ORDER = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left_arm", "right_arm",
    "left_leg", "right_leg", "left_shoe", "right_shoe",
)  # fmt: skip
SPT_ORDER = ("background", "face", "hair", "upper_clothes", "pants", "skirt", "left_arm",
             "right_arm", "left_leg", "right_leg")  # fmt: skip
RWRI, LWRI, RANK, LANK = 4, 7, 10, 13


def _kp(**joints):
    kp = np.full((18, 2), -1, np.float32)
    for idx, yx in joints.items():
        kp[{"rwri": RWRI, "lwri": LWRI, "rank": RANK, "lank": LANK}[idx]] = yx
    return kp


def test_label_sets():
    assert labels.SPT_LABELS == SPT_ORDER and labels.NUM_LABELS == 10
    assert labels.LIP_LABELS == LIP_ORDER and labels.NUM_LIP_LABELS == 20


def test_every_sided_lip_label_maps_as_decided():
    names = [n for n in LIP_ORDER if n in EXPECTED]
    lip = np.array([[LIP_ORDER.index(n) for n in names]] * 2, np.uint8)  # [2, 18]
    out = labels.lip_to_spt(lip)
    assert out.dtype == np.uint8 and out.shape == lip.shape
    assert [SPT_ORDER[v] for v in out[0]] == [EXPECTED[n] for n in names]
    np.testing.assert_array_equal(out[0], out[1])


def test_glove_and_socks_take_the_nearer_side():
    lip = np.zeros((10, 20), np.int64)
    glove, socks = LIP_ORDER.index("glove"), LIP_ORDER.index("socks")
    lip[2, 1] = lip[2, 6] = glove  # nearer Rwri (x = 2) / nearer Lwri (x = 17)
    lip[2, 12] = glove
    lip[8, 3] = lip[8, 15] = socks
    lip[0, 0] = LIP_ORDER.index("face")
    kp = _kp(rwri=(2, 2), lwri=(2, 17), rank=(9, 4), lank=(9, 16))
    out = labels.lip_to_spt(lip, kp)
    right_arm, left_arm = SPT_ORDER.index("right_arm"), SPT_ORDER.index("left_arm")
    right_leg, left_leg = SPT_ORDER.index("right_leg"), SPT_ORDER.index("left_leg")
    assert out[2, 1] == right_arm and out[2, 6] == right_arm and out[2, 12] == left_arm
    assert out[8, 3] == right_leg and out[8, 15] == left_leg
    assert out[0, 0] == SPT_ORDER.index("face")
    # Everything else is background.
    mask = np.ones_like(lip, bool)
    mask[[2, 2, 2, 8, 8, 0], [1, 6, 12, 3, 15, 0]] = False
    assert not out[mask].any()


def test_side_with_one_keypoint_and_errors_without_any():
    lip = np.full((4, 4), LIP_ORDER.index("glove"), np.uint8)
    out = labels.lip_to_spt(lip, _kp(lwri=(0, 0)))  # only the left wrist: all left
    assert (out == SPT_ORDER.index("left_arm")).all()
    out = labels.lip_to_spt(lip, _kp(rwri=(3, 3), rank=(0, 0)))
    assert (out == SPT_ORDER.index("right_arm")).all()
    with pytest.raises(ValueError, match="glove/socks"):
        labels.lip_to_spt(lip)
    with pytest.raises(ValueError, match="glove/socks"):
        labels.lip_to_spt(lip, _kp(rank=(1, 1), lank=(2, 2)))  # ankles do not side gloves
    socks = np.full((3, 3), LIP_ORDER.index("socks"), np.uint8)
    with pytest.raises(ValueError, match="glove/socks"):
        labels.lip_to_spt(socks, _kp(rwri=(1, 1)))
    # No side-less pixel: keypoints are not needed.
    assert labels.lip_to_spt(np.zeros((2, 2), np.uint8)).sum() == 0


def test_lip_table_overrides():
    lip = np.array([[LIP_ORDER.index("hat"), LIP_ORDER.index("glove"), LIP_ORDER.index("dress")]])
    out = labels.lip_to_spt(lip, lip_table={"hat": "face", "glove": "upper_clothes",
                                            "dress": "skirt"})  # fmt: skip
    assert [SPT_ORDER[v] for v in out[0]] == ["face", "upper_clothes", "skirt"]
    # The module default is untouched by an override.
    assert labels.lip_to_spt(lip[:, :1])[0, 0] == SPT_ORDER.index("hair")
    # An override may make a sided label side-less too.
    out = labels.lip_to_spt(
        np.array([[LIP_ORDER.index("left_shoe")]]),
        _kp(rank=(0, 5)),
        lip_table={"left_shoe": labels.LEG_BY_NEARER_ANKLE},
    )
    assert out[0, 0] == SPT_ORDER.index("right_leg")
    with pytest.raises(ValueError, match="unknown LIP"):
        labels.lip_to_spt(lip, lip_table={"helmet": "hair"})
    with pytest.raises(ValueError, match="unknown SPT"):
        labels.lip_to_spt(lip, lip_table={"hat": "cap"})
    with pytest.raises(ValueError, match="must be an SPT label name"):
        labels.lip_to_spt(lip, lip_table={"hat": 2})


def test_bad_lip_maps_raise():
    with pytest.raises(ValueError, match="0..19"):
        labels.lip_to_spt(np.array([[0, 20]]))
    with pytest.raises(ValueError, match="0..19"):
        labels.lip_to_spt(np.array([[-1, 3]]))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        labels.lip_to_spt(np.zeros((1, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="integer"):
        labels.lip_to_spt(np.array([[1.5, 2.0]]))
    # Integral floats (a map read through a float pipeline) are accepted.
    assert labels.lip_to_spt(np.array([[2.0]]))[0, 0] == SPT_ORDER.index("hair")


def test_palette_and_colorize():
    pal = labels.PALETTE
    assert pal.shape == (10, 3) and pal.dtype == np.uint8
    assert len({tuple(c) for c in pal}) == 10  # distinct colours
    assert (pal[0] == 0).all()  # background black
    lab = np.array([[0, 1, 2], [7, 8, 9]], np.uint8)
    rgb = labels.colorize(lab)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    for (i, j), v in np.ndenumerate(lab):
        np.testing.assert_array_equal(rgb[i, j], pal[v])
    # Batched labels and one-hot / probability maps give the same colours.
    batch = np.stack([lab, lab[::-1]])
    np.testing.assert_array_equal(labels.colorize(batch)[1], labels.colorize(lab[::-1]))
    probs = np.eye(10, dtype=np.float32)[batch] * 0.8 + 0.02
    np.testing.assert_array_equal(labels.colorize(probs), labels.colorize(batch))
    with pytest.raises(ValueError, match="0..9"):
        labels.colorize(np.array([[3, 10]]))
