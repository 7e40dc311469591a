"""Tests of spt_tf.data.formats: round trips and every error case."""

import logging

import cv2
import numpy as np
import pytest

from spt_tf.data import formats
from spt_tf.data.formats import FormatError

HEADER = "name:keypoints_y:keypoints_x\n"


def _row(name, ys, xs):
    return f"{name}: [{', '.join(map(str, ys))}]: [{', '.join(map(str, xs))}]\n"


def _write(path, text):
    path.write_text(text)
    return path


def _good_kp(seed=0):
    rng = np.random.default_rng(seed)
    kp = rng.integers(0, 60, size=(18, 2)).astype(np.float32)
    kp[[0, 14, 16]] = -1
    return kp


# ------------------------------------------------------------------ annotations


def test_read_annotations_field_format(tmp_path):
    """The field's own row format (pose-gan's compute_coordinates output) parses to (y, x)."""
    ys = list(range(18))
    xs = [100 + i for i in range(18)]
    ys[3] = xs[3] = -1
    path = _write(tmp_path / "a.csv", HEADER + _row("img1.jpg", ys, xs) + _row("b.jpg", xs, ys))
    out = formats.read_annotations(path)
    assert list(out) == ["img1.jpg", "b.jpg"]
    kp = out["img1.jpg"]
    assert kp.dtype == np.float32 and kp.shape == (18, 2)
    assert kp[5, 0] == 5 and kp[5, 1] == 105
    assert (kp[3] == -1).all()
    assert out["b.jpg"][5, 0] == 105


def test_read_annotations_accepts_floats(tmp_path):
    ys = [1.5] * 18
    xs = [2.25] * 18
    out = formats.read_annotations(_write(tmp_path / "a.csv", HEADER + _row("a", ys, xs)))
    assert out["a"][0, 0] == np.float32(1.5) and out["a"][0, 1] == np.float32(2.25)


def test_annotations_round_trip_exact(tmp_path):
    rng = np.random.default_rng(1)
    mapping = {f"n{i}.jpg": _good_kp(i) for i in range(5)}
    mapping["frac.jpg"] = rng.uniform(0, 50, size=(18, 2)).astype(np.float32)
    mapping["frac.jpg"][2] = -1
    path = tmp_path / "sub" / "a.csv"
    formats.write_annotations(path, mapping)
    back = formats.read_annotations(path)
    assert list(back) == list(mapping)
    for k in mapping:
        np.testing.assert_array_equal(back[k], mapping[k])
    text = path.read_text()
    assert text.startswith(HEADER)
    # Integral values are written as ints.
    first = text.splitlines()[1]
    assert "." not in first.split(":", 1)[1]
    assert first.split(":")[1].strip() == "[" + ", ".join(str(int(v)) for v in mapping["n0.jpg"][:, 0]) + "]"


@pytest.mark.parametrize(
    "body, row, field, words",
    [
        (_row("a", [1] * 17, [1] * 17), 2, "keypoints_y", "expected 18 keypoints, got 17"),
        (_row("a", [1] * 18, [1] * 19), 2, "keypoints_x", "expected 18 keypoints, got 19"),
        (_row("a", [1] * 17 + ["x"], [1] * 18), 2, "keypoints_y", "not a number"),
        (_row("a", [1] * 18, [1] * 17 + ["nan"]), 2, "keypoints_x", "not finite"),
        (_row("a", [-1] + [1] * 17, [1] * 18), 2, "keypoints_x", "one coordinate only"),
        (_row("a", [1] * 18, [-1] + [1] * 17), 2, "keypoints_y", "one coordinate only"),
        (_row("a", [1] * 18, [1] * 18) + _row("a", [2] * 18, [2] * 18), 3, "name", "duplicate"),
        ("a: [1, 2]\n", 2, None, "3 ':'-separated fields"),
        (_row("a", [1] * 18, [1] * 18) + "b: 1, 2: [1]\n", 3, "keypoints_y", "expected a list"),
        (_row("a", [1] * 18, [-5] + [1] * 17), 2, "keypoints_x", "outside the image"),
    ],
)
def test_read_annotations_errors(tmp_path, body, row, field, words):
    path = _write(tmp_path / "bad.csv", HEADER + body)
    with pytest.raises(FormatError) as e:
        formats.read_annotations(path)
    assert e.value.row == row and e.value.field == field
    msg = str(e.value)
    assert str(path) in msg and f"row {row}" in msg and words in msg
    if field:
        assert repr(field) in msg


def test_read_annotations_image_bounds(tmp_path):
    ys = [1] * 18
    xs = [1] * 18
    xs[4] = 33.5  # W = 32: last pixel 31, tolerance 2 -> 33 allowed, 33.5 not
    path = _write(tmp_path / "a.csv", HEADER + _row("a", [1] * 18, [33] * 18) + _row("b", ys, xs))
    with pytest.raises(FormatError, match=r"row 3, field 'keypoints_x'.*keypoint 4 .*33.5"):
        formats.read_annotations(path, image_size=(64, 32))
    # Same file without image_size or with a larger tolerance is fine.
    assert len(formats.read_annotations(path)) == 2
    assert len(formats.read_annotations(path, image_size=(64, 32), tolerance=3)) == 2
    ys2 = [64.5] * 18
    path2 = _write(tmp_path / "b.csv", HEADER + _row("a", ys2, [1] * 18))
    assert len(formats.read_annotations(path2, image_size=(64, 32))) == 1  # 63 + 2 >= 64.5
    with pytest.raises(FormatError, match="keypoints_y"):
        formats.read_annotations(path2, image_size=(64, 32), tolerance=1.0)


def test_read_annotations_bad_header_and_missing(tmp_path):
    with pytest.raises(FormatError, match="row 1.*bad header"):
        formats.read_annotations(_write(tmp_path / "h.csv", "name,keypoints_y,keypoints_x\n"))
    with pytest.raises(FormatError, match="empty file"):
        formats.read_annotations(_write(tmp_path / "e.csv", ""))
    with pytest.raises(FormatError, match="nope.csv.*not found"):
        formats.read_annotations(tmp_path / "nope.csv")


def test_read_annotations_skip_invalid_reports(tmp_path, caplog):
    body = (
        _row("a", [1] * 18, [1] * 18)
        + _row("b", [1] * 17, [1] * 17)
        + _row("a", [1] * 18, [1] * 18)
        + _row("c", [2] * 18, [2] * 18)
    )
    path = _write(tmp_path / "a.csv", HEADER + body)
    report = []
    with caplog.at_level(logging.WARNING):
        out = formats.read_annotations(path, skip_invalid=True, report=report)
    assert list(out) == ["a", "c"]
    assert [e.row for e in report] == [3, 4]
    assert all(isinstance(e, FormatError) for e in report)
    assert "skipped 2 invalid" in caplog.text
    # Header errors are never skipped.
    with pytest.raises(FormatError):
        formats.read_annotations(_write(tmp_path / "h.csv", "x:y\n"), skip_invalid=True)


def test_read_annotations_rows_of_the_rows_returned(tmp_path):
    body = (
        _row("a", [1] * 18, [1] * 18)
        + "\n"  # a blank line still counts as a row of the file
        + _row("b", [1] * 17, [1] * 17)
        + _row("c", [2] * 18, [2] * 18)
    )
    path = _write(tmp_path / "a.csv", HEADER + body)
    rows = {}
    out = formats.read_annotations(path, skip_invalid=True, report=[], rows=rows)
    assert list(out) == ["a", "c"] and rows == {"a": 2, "c": 5}


def test_write_annotations_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\[18, 2\]"):
        formats.write_annotations(tmp_path / "a.csv", {"a": np.zeros((17, 2))})
    with pytest.raises(ValueError, match="without ':'"):
        formats.write_annotations(tmp_path / "a.csv", {"a:b": np.zeros((18, 2))})


# ------------------------------------------------------------------ pairs


def test_pairs_round_trip_and_extra_columns(tmp_path):
    pairs = [("a.jpg", "b.jpg"), ("b.jpg", "a.jpg"), ("c d.jpg", "e,f.jpg")]
    path = tmp_path / "p.csv"
    formats.write_pairs(path, pairs, extra_columns={"score": [0.5, 1, 2]})
    assert path.read_text().splitlines()[0] == "from,to,score"
    assert formats.read_pairs(path) == pairs
    # The field's pandas files carry an index column first.
    path2 = _write(tmp_path / "q.csv", ",from,to\n0,x.jpg,y.jpg\n1,y.jpg,x.jpg\n")
    assert formats.read_pairs(path2, known_names={"x.jpg", "y.jpg"}) == [
        ("x.jpg", "y.jpg"),
        ("y.jpg", "x.jpg"),
    ]


def test_read_pairs_errors(tmp_path):
    with pytest.raises(FormatError, match="row 1, field 'to'"):
        formats.read_pairs(_write(tmp_path / "a.csv", "from,target\na,b\n"))
    with pytest.raises(FormatError, match="not found"):
        formats.read_pairs(tmp_path / "missing.csv")
    path = _write(tmp_path / "b.csv", "from,to\na,b\nb,zzz\n")
    with pytest.raises(FormatError) as e:
        formats.read_pairs(path, known_names={"a", "b"})
    assert e.value.row == 3 and e.value.field == "to" and "zzz" in str(e.value)
    with pytest.raises(FormatError, match="row 2, field 'from': empty name"):
        formats.read_pairs(_write(tmp_path / "c.csv", "from,to\n,b\n"))
    with pytest.raises(FormatError, match="row 2.*columns"):
        formats.read_pairs(_write(tmp_path / "d.csv", "from,to\na,b,c\n"))
    report = []
    assert formats.read_pairs(path, {"a", "b"}, skip_invalid=True, report=report) == [("a", "b")]
    assert len(report) == 1 and report[0].row == 3


# ------------------------------------------------------------------ parsing


def test_parsing_round_trip_png_and_npy(tmp_path):
    labels = np.random.default_rng(0).integers(0, 10, size=(13, 7)).astype(np.uint8)
    formats.write_parsing(tmp_path / "p.png", labels)
    back = formats.read_parsing(tmp_path / "p.png", shape=(13, 7))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)
    # Read with an independent decoder too: the png holds the raw labels.
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "p.png"), cv2.IMREAD_UNCHANGED), labels)
    np.save(tmp_path / "q.npy", labels.astype(np.int64))
    np.testing.assert_array_equal(formats.read_parsing(tmp_path / "q.npy"), labels)
    lip = np.full((4, 4), 19, np.uint8)
    formats.write_parsing(tmp_path / "lip.npy", lip)
    np.testing.assert_array_equal(formats.read_parsing(tmp_path / "lip.npy", num_labels=20), lip)


def test_read_parsing_errors(tmp_path):
    labels = np.zeros((8, 4), np.uint8)
    labels[2, 3] = 12
    cv2.imwrite(str(tmp_path / "big.png"), labels)
    with pytest.raises(FormatError, match=r"big.png.*label 12 out of range 0..9"):
        formats.read_parsing(tmp_path / "big.png")
    np.save(tmp_path / "neg.npy", np.full((2, 2), -1, np.int32))
    with pytest.raises(FormatError, match="label -1 out of range"):
        formats.read_parsing(tmp_path / "neg.npy")
    with pytest.raises(FormatError, match=r"shape \(8, 4\) differs.*\(8, 5\)"):
        formats.read_parsing(tmp_path / "big.png", num_labels=20, shape=(8, 5))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(FormatError, match="rgb.png.*single-channel"):
        formats.read_parsing(tmp_path / "rgb.png")
    with pytest.raises(FormatError, match="missing.png.*not found"):
        formats.read_parsing(tmp_path / "missing.png")
    np.save(tmp_path / "f.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(FormatError, match="integers"):
        formats.read_parsing(tmp_path / "f.npy")
    with pytest.raises(FormatError, match=".jpg"):
        formats.read_parsing(tmp_path / "x.jpg")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(FormatError, match="junk.png.*decode"):
        formats.read_parsing(tmp_path / "junk.png")


# ------------------------------------------------------------------ images


def test_image_round_trip_rgb_order(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 6, 3)).astype(np.uint8)
    formats.write_image(tmp_path / "i.png", rgb)
    np.testing.assert_array_equal(formats.read_image(tmp_path / "i.png"), rgb)
    # On disk OpenCV stores BGR: the red channel is the last one.
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "i.png"))[..., 2], rgb[..., 0])


def test_read_image_grayscale_and_errors(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    img = formats.read_image(tmp_path / "g.png")
    assert img.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], gray)
    with pytest.raises(FormatError, match="none.png.*not found"):
        formats.read_image(tmp_path / "none.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(FormatError, match="bad.jpg.*cannot decode"):
        formats.read_image(tmp_path / "bad.jpg")
    with pytest.raises(ValueError):
        formats.write_image(tmp_path / "x.png", np.zeros((3, 3), np.uint8))


# ------------------------------------------------------------------ paths


def test_resolve_and_find_parsing(tmp_path):
    assert formats.resolve("/data/root", "train") == "/data/root/train"
    assert formats.resolve("/data/root", "/abs/train") == "/abs/train"
    assert formats.resolve("", "train") == "train"
    formats.write_parsing(tmp_path / "foo.png", np.zeros((2, 2), np.uint8))
    np.save(tmp_path / "bar.npy", np.zeros((2, 2), np.uint8))
    assert formats.find_parsing(tmp_path, "foo.jpg") == str(tmp_path / "foo.png")
    assert formats.find_parsing(tmp_path, "bar.jpg") == str(tmp_path / "bar.npy")
    with pytest.raises(FormatError, match="baz.png.*no parsing map for image 'baz.jpg'"):
        formats.find_parsing(tmp_path, "baz.jpg")
    np.save(tmp_path / "foo.npy", np.zeros((2, 2), np.uint8))
    with pytest.raises(FormatError, match="both"):
        formats.find_parsing(tmp_path, "foo.jpg")
