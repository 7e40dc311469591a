"""Files of the search: the ``from,to,cost`` output, identities, and a split's maps."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np

from spt_tf.data import formats
from spt_tf.data.pseudo_pairs.masks import _F, present


def _write_rows(path: str, rows: Sequence[tuple[str, str, float]]) -> None:
    """Writes ``from,to,cost`` atomically (a killed run never leaves half a file)."""
    tmp = path + ".tmp"
    formats.write_pairs(tmp, [(a, b) for a, b, _ in rows], {"cost": [f"{c:.3f}" for _, _, c in rows]})
    os.replace(tmp, path)


def read_pseudo_pairs(path) -> list[tuple[str, str, float]]:
    """Reads a ``from,to,cost`` file written by :func:`~spt_tf.data.pseudo_pairs.run_search`.

    Raises:
      formats.FormatError: missing file, header without from/to/cost, a bad row (naming the
        row and field).
    """
    pairs = formats.read_pairs(path)
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        if "cost" not in header:
            raise formats.FormatError(path, f"header {header} lacks the column 'cost'", 1, "cost")
        i_cost = header.index("cost")
        costs = []
        for row, fields in enumerate(reader, start=2):
            if not fields or not any(x.strip() for x in fields):
                continue
            try:
                costs.append(float(fields[i_cost]))
            except ValueError:
                raise formats.FormatError(path, f"cost {fields[i_cost]!r} is not a number", row, "cost") from None
    return [(a, b, c) for (a, b), c in zip(pairs, costs)]


def read_identities(path) -> dict[str, str]:
    """name -> identity from a CSV with the columns ``name`` and ``identity`` (identities.csv).

    Raises:
      formats.FormatError: missing file or column, empty field, duplicate name.
    """
    try:
        f = open(path, encoding="utf-8", newline="")
    except FileNotFoundError:
        raise formats.FormatError(path, "file not found") from None
    with f:
        reader = csv.reader(f)
        header = [c.strip() for c in next(reader, [])]
        for col in ("name", "identity"):
            if col not in header:
                raise formats.FormatError(path, f"header {header} lacks the column {col!r}", 1, col)
        i_name, i_id = header.index("name"), header.index("identity")
        out: dict[str, str] = {}
        for row, fields in enumerate(reader, start=2):
            if not fields or not any(x.strip() for x in fields):
                continue
            if len(fields) != len(header):
                raise formats.FormatError(path, f"expected {len(header)} columns, got {len(fields)}", row)
            name, ident = fields[i_name].strip(), fields[i_id].strip()
            for col, v in (("name", name), ("identity", ident)):
                if not v:
                    raise formats.FormatError(path, "empty field", row, col)
            if name in out:
                raise formats.FormatError(path, f"duplicate name {name!r}", row, "name")
            out[name] = ident
    return out


def load_dataset(
    annotations: str,
    parsing_dir: str,
    size: tuple[int, int] | None = None,
    maps_out: str | None = None,
    tolerance: float = 2.0,
    progress: bool = True,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads the keypoints and every parsing map of a split.

    Maps of another size than ``size`` are resized (nearest neighbour) and their keypoints
    scaled with them (``y * H / h``, the ``spt_tf.geometry`` pixel convention).

    Args:
      annotations: annotation CSV (``spt_tf.data.formats``).
      parsing_dir: folder of ``<stem>.png`` / ``<stem>.npy`` maps.
      size: (H, W) to work at; None: the maps' own (all must agree).
      maps_out: optional ``.npy`` path; the maps are written there as a memory map instead of
        held in memory (large sets).
      tolerance: pixels a keypoint may lie outside its map (``formats.read_annotations``;
        the field's 256x176 DeepFashion files need ``formats.DEEPFASHION_176_TOLERANCE``).
      progress: tqdm bar.

    Returns:
      (names, maps [N, H, W] uint8, keypoints [N, 18, 2] float32 at (H, W)).

    Raises:
      formats.FormatError: a missing or bad file, or maps of different sizes without ``size``.
    """
    # The file's frame is each map's own size (checked below, after any resize); the reader
    # checks the lower bound with the same tolerance.
    rows: dict[str, int] = {}
    kps = formats.read_annotations(annotations, tolerance=tolerance, rows=rows)
    names = list(kps)
    if not names:
        raise formats.FormatError(annotations, "no annotation rows")
    first = formats.read_parsing(formats.find_parsing(parsing_dir, names[0]))
    h, w = size if size is not None else first.shape
    if maps_out is not None:
        maps = np.lib.format.open_memmap(maps_out, mode="w+", dtype=np.uint8, shape=(len(names), h, w))
    else:
        maps = np.empty((len(names), h, w), np.uint8)
    kp = np.empty((len(names), 18, 2), _F)
    it = enumerate(names)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(names), desc="loading maps", unit="map")
    import cv2

    for i, name in it:
        path = formats.find_parsing(parsing_dir, name)
        m = formats.read_parsing(path)
        k = kps[name].copy()
        if m.shape != (h, w):
            if size is None:
                raise formats.FormatError(
                    path, f"map size {m.shape} differs from the first map's {(h, w)}; pass a working size"
                )
            vis = present(k)
            k = np.where(vis[:, None], k * np.array([h / m.shape[0], w / m.shape[1]], _F), k)
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
        vis = present(k)
        bad = vis[:, None] & np.stack(
            [
                (k[:, 0] < -tolerance) | (k[:, 0] > h - 1 + tolerance),
                (k[:, 1] < -tolerance) | (k[:, 1] > w - 1 + tolerance),
            ],
            1,
        )  # [18, (y, x)]
        if bad.any():
            j, c = (int(v) for v in np.argwhere(bad)[0])
            raise formats.FormatError(
                annotations,
                f"keypoint {j} of {name!r} at {k[j].tolist()} "
                f"lies outside its {h}x{w} map by more than the tolerance "
                f"{tolerance:g}",
                rows[name],
                ("keypoints_y", "keypoints_x")[c],
            )
        maps[i] = m
        kp[i] = k
    if isinstance(maps, np.memmap):
        maps.flush()
    return names, maps, kp
