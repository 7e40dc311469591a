"""The exact stages of the search and the in-memory :func:`search`.

After the pre-filter (:mod:`spt_tf.data.pseudo_pairs.descriptors`), :func:`rerank` computes
the exact cost on the maps reduced to a height of about ``coarse_size`` (mode pooling,
:func:`mode_pool`) to keep ``top_k`` candidates, then the exact cost at the maps'
resolution, whose argmin is the pseudo target.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from absl import logging

from spt_tf.data.pseudo_pairs.clothing_groups import _group_ids, clothing_types, vote_clothing
from spt_tf.data.pseudo_pairs.cost import eq1_costs_pairs, transforms_for
from spt_tf.data.pseudo_pairs.descriptors import build_descriptors, prefilter
from spt_tf.data.pseudo_pairs.masks import _F, NUM_PARTS, present
from spt_tf.data.pseudo_pairs.settings import SearchSettings
from spt_tf.labels import NUM_LABELS


def coarse_factor(height: int, coarse_size: int) -> int:
    """Largest power of two f with ``height // f >= coarse_size`` (1: no coarse stage)."""
    f = 1
    while coarse_size > 0 and height // (2 * f) >= coarse_size:
        f *= 2
    return f


def candidates_per_source(height: int, settings: SearchSettings) -> int:
    """How many candidates the pre-filter keeps: ``prefilter_k`` with a coarse stage."""
    return settings.prefilter_k if coarse_factor(height, settings.coarse_size) > 1 else settings.top_k


def mode_pool(maps: np.ndarray, factor: int, batch: int = 1024) -> np.ndarray:
    """[N, H, W] labels -> [N, H // f, W // f]: the most frequent label of each f x f block.

    Ties go to the lowest label; rows/columns beyond a multiple of ``factor`` are dropped.
    Pixel ``(i, j)`` of the result sits at ``(i f, j f)`` of the input, the
    ``spt_tf.geometry`` convention, so keypoints scale by ``1 / f``.
    """
    n, h, w = maps.shape
    hh, ww = h // factor, w // factor
    out = np.empty((n, hh, ww), np.uint8)
    for i in range(0, n, batch):
        m = np.asarray(maps[i : i + batch])[:, : hh * factor, : ww * factor]
        blocks = m.reshape(len(m), hh, factor, ww, factor).transpose(0, 1, 3, 2, 4)
        blocks = blocks.reshape(len(m), hh, ww, factor * factor)
        counts = np.stack([(blocks == lab).sum(-1) for lab in range(NUM_LABELS)], -1)
        out[i : i + batch] = counts.argmax(-1)
    return out


def _scaled_keypoints(kp: np.ndarray, factor: int) -> np.ndarray:
    return np.where(present(kp)[..., None], kp / factor, kp).astype(_F)


def _scaled_transforms(transforms: np.ndarray, factor: int) -> np.ndarray:
    """Transforms in pixels of a map reduced by ``factor`` (``geometry.scale_transforms``)."""
    t = np.array(transforms, _F, copy=True)
    t[..., 2] /= factor
    t[..., 5] /= factor
    return t


def _table_costs(maps, keypoints, sources, candidates, transforms, settings):
    """Exact costs [S, K] (inf where the candidate is -1)."""
    valid = candidates >= 0
    table = np.full(candidates.shape, np.inf)
    if not valid.any():
        return table
    row, col = np.nonzero(valid)
    used_c, inv_c = np.unique(candidates[row, col], return_inverse=True)
    table[row, col] = eq1_costs_pairs(
        np.asarray(maps[sources]),
        keypoints[sources],
        np.asarray(maps[used_c]),
        keypoints[used_c],
        row,
        inv_c,
        transforms[row, col],
        settings.missing_part_penalty,
        settings.outside_is_background,
    )
    return table


_RERANK_GROUP = 64  # sources per exact-cost call (bounds a worker's memory)


def rerank(
    maps: np.ndarray,
    keypoints: np.ndarray,
    sources: np.ndarray,
    candidates: np.ndarray,
    transforms: np.ndarray,
    settings: SearchSettings,
    coarse_maps: np.ndarray | None = None,
) -> list[tuple[int, int, float]]:
    """Exact Eq. 1 over each source's candidates; the argmin (first on ties).

    With ``coarse_maps`` (the maps reduced by :func:`mode_pool`) and more than ``top_k``
    candidates, all candidates first get the exact cost at the reduced resolution, and the
    best ``top_k`` of them (ties in the given order) the exact cost at full resolution,
    which alone decides.

    Args:
      maps: [N, H, W] uint8 (a memory map is fine: only the rows used are read).
      keypoints: [N, 18, 2].
      sources: [S] indices; candidates: [S, K] indices (-1 padded); transforms
        [S, K, 10, 8] ``part_transforms(source, candidate)`` at full resolution.
      settings: the cost options and ``top_k``.
      coarse_maps: [N, H / f, W / f] or None.

    Returns:
      ``(source, best candidate, cost)`` for the sources with at least one candidate.
    """
    sources = np.asarray(sources, np.int64)
    if len(sources) > _RERANK_GROUP:
        # Sources in groups: the per-source part planes of a group are held at once.
        out = []
        for g in range(0, len(sources), _RERANK_GROUP):
            sl = slice(g, g + _RERANK_GROUP)
            out += rerank(maps, keypoints, sources[sl], candidates[sl], transforms[sl], settings, coarse_maps)
        return out
    candidates = np.asarray(candidates, np.int64)
    transforms = np.asarray(transforms, _F)
    if coarse_maps is not None and candidates.shape[1] > settings.top_k:
        factor = maps.shape[1] // coarse_maps.shape[1]
        coarse = _table_costs(
            coarse_maps,
            _scaled_keypoints(keypoints, factor),
            sources,
            candidates,
            _scaled_transforms(transforms, factor),
            settings,
        )
        keep = np.argsort(coarse, axis=1, kind="stable")[:, : settings.top_k]
        candidates = np.take_along_axis(candidates, keep, 1)
        transforms = np.take_along_axis(transforms, keep[..., None, None], 1)
    table = _table_costs(maps, keypoints, sources, candidates, transforms, settings)
    out = []
    for i, s in enumerate(sources):
        if (candidates[i] >= 0).any():
            best = int(np.argmin(table[i]))
            out.append((int(s), int(candidates[i, best]), float(table[i, best])))
    return out


def _stack_inputs(parsing: Mapping[str, np.ndarray], keypoints: Mapping[str, np.ndarray]):
    names = list(parsing)
    missing = [n for n in names if n not in keypoints]
    if missing:
        raise ValueError(f"no keypoints for {len(missing)} maps, e.g. {missing[0]!r}")
    shapes = {np.shape(parsing[n]) for n in names}
    if len(shapes) != 1:
        raise ValueError(f"parsing maps must share one size, got {sorted(shapes)}")
    maps = np.stack([np.asarray(parsing[n], np.uint8) for n in names])
    if maps.ndim != 3:
        raise ValueError(f"parsing maps must be [H, W], got {maps.shape[1:]}")
    kp = np.stack([np.asarray(keypoints[n], _F) for n in names])
    if kp.shape[1:] != (18, 2):
        raise ValueError(f"keypoints must be [18, 2], got {kp.shape[1:]}")
    return names, maps, kp


def _prepare(maps, kp, names, clothing, identities, settings, progress):
    """Groups, identity ids, descriptors and the pre-filter of a stacked set."""
    if clothing is None:
        types = clothing_types(maps, kp, progress)
        if identities is not None and settings.clothing_vote:
            types = vote_clothing(types, [identities[n] for n in names])
    else:
        missing = [n for n in names if n not in clothing]
        if missing:
            raise ValueError(f"no clothing type for {len(missing)} maps, e.g. {missing[0]!r}")
        types = [clothing[n] for n in names]
    groups = _group_ids(types)
    ids = None
    if identities is not None:
        missing = [n for n in names if n not in identities]
        if missing:
            raise ValueError(f"no identity for {len(missing)} maps, e.g. {missing[0]!r}")
        ids = _group_ids([identities[n] for n in names])
    desc = build_descriptors(maps, kp, settings, progress=progress)
    return prefilter(desc, kp, groups, ids, settings, progress, candidates_per_source(maps.shape[1], settings))


def search(
    parsing: Mapping[str, np.ndarray],
    keypoints: Mapping[str, np.ndarray],
    clothing: Mapping[str, object] | None = None,
    identities: Mapping[str, object] | None = None,
    top_k: int = SearchSettings.top_k,
    min_pose_distance: float = SearchSettings.min_pose_distance,
    exclude_same_identity: bool = True,
    settings: SearchSettings | None = None,
    prefilter_k: int | None = None,
    progress: bool = False,
) -> list[tuple[str, str, float]]:
    """Pseudo pairs of an in-memory set: for every map, the admissible Eq. 1 argmin.

    Args:
      parsing: name -> uint8 [H, W] labels 0..9 (one size for all).
      keypoints: name -> [18, 2] (y, x) pixels of the map, -1 missing.
      clothing: name -> clothing type (any hashable; equal types may pair); computed with
        :func:`spt_tf.data.clothing.clothing_type` when None (then voted per identity when
        identities are given, see :func:`vote_clothing`).
      identities: name -> identity; with ``exclude_same_identity`` two images of one
        identity never pair.
      top_k, min_pose_distance, exclude_same_identity, prefilter_k: see
        :class:`SearchSettings` (ignored when ``settings`` is given; ``prefilter_k``
        defaults to ``max(32, top_k)``).
      settings: all knobs at once.
      progress: tqdm bars.

    Returns:
      ``(from, to, cost)`` in the order of ``parsing``; a map without any admissible
      candidate has no row (their number is logged as a warning).
    """
    if settings is None:
        settings = SearchSettings(
            top_k=top_k,
            min_pose_distance=min_pose_distance,
            exclude_same_identity=exclude_same_identity,
            prefilter_k=max(SearchSettings.prefilter_k, top_k) if prefilter_k is None else prefilter_k,
        )
    names, maps, kp = _stack_inputs(parsing, keypoints)
    cand, _ = _prepare(maps, kp, names, clothing, identities, settings, progress)
    factor = coarse_factor(maps.shape[1], settings.coarse_size)
    coarse = mode_pool(maps, factor) if factor > 1 else None
    sources = np.arange(len(names))
    rows = []
    for s0 in range(0, len(names), 256):
        src = sources[s0 : s0 + 256]
        tr = _chunk_transforms(kp, src, cand[src])
        rows += rerank(maps, kp, src, cand[src], tr, settings, coarse)
    _warn_unmatched(len(names) - len(rows))
    return [(names[s], names[c], cost) for s, c, cost in rows]


def _warn_unmatched(count: int) -> None:
    if count:
        logging.warning(
            "%d maps have no admissible pseudo target (another image of the same "
            "clothing type in a different pose, of another identity when identities "
            "are excluded) and get no row",
            count,
        )


def _chunk_transforms(kp: np.ndarray, sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """[S, K, 10, 8] part transforms source -> each candidate (-1 entries: identity pose)."""
    s, k = candidates.shape
    src = np.repeat(kp[sources], k, 0)
    cnd = kp[np.maximum(candidates, 0)].reshape(s * k, 18, 2)
    return transforms_for(src, cnd).reshape(s, k, NUM_PARTS, 8)
