"""Clothing groups of the search: only maps of one clothing type may pair.

Types come from :func:`spt_tf.data.clothing.clothing_type`, optionally voted per identity
(one person wears one outfit, and the views that hide a sleeve are outvoted).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spt_tf.data import clothing as clothing_lib


def _group_ids(types: Sequence) -> np.ndarray:
    """Integer group of each clothing type (equal types, equal ids)."""
    table: dict = {}
    return np.array([table.setdefault(t, len(table)) for t in types], np.int64)


def clothing_types(maps: np.ndarray, keypoints: np.ndarray, progress: bool = False) -> list:
    """:func:`spt_tf.data.clothing.clothing_type` of every map."""
    it = range(len(maps))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="clothing", unit="map")
    return [clothing_lib.clothing_type(maps[i], keypoints[i]) for i in it]


def vote_clothing(types: Sequence[tuple], identities: Sequence) -> list[tuple]:
    """Per identity and per component, the majority clothing type of its images.

    ``"unknown"`` does not vote (it stays where an identity has no other evidence); on a tie
    an image keeps its own value when it is among the tied ones, else the first in sorted
    order.

    Args:
      types: [N] tuples such as ``("short", "pants")`` (:func:`clothing.clothing_type`).
      identities: [N] identity of each image.

    Returns:
      [N] tuples.
    """
    if len(types) != len(identities):
        raise ValueError(f"{len(types)} clothing types for {len(identities)} identities")
    members: dict = {}
    for i, ident in enumerate(identities):
        members.setdefault(ident, []).append(i)
    out = [list(t) for t in types]
    for idx in members.values():
        for c in range(len(types[idx[0]])):
            counts = _count(types[i][c] for i in idx if types[i][c] != clothing_lib.UNKNOWN)
            if not counts:
                continue
            top = max(counts.values())
            tied = sorted(v for v, k in counts.items() if k == top)
            for i in idx:
                own = types[i][c]
                out[i][c] = own if own in tied else tied[0]
    return [tuple(t) for t in out]


def _count(items) -> dict:
    out: dict = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out
