"""The descriptor pre-filter: normalised poses, canonical part descriptors, top-K candidates.

Every part's content is resampled into a canonical frame at low resolution
(:class:`Descriptors`), weighted so that an approximate Eq. 1 is one matrix product
``U[s] @ V[c]``; :func:`prefilter` keeps each source's best admissible candidates (same
clothing group, another image, a different pose by :func:`pose_distances`, another identity
when required) for the exact stages.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spt_tf.data.pseudo_pairs.cost import transforms_for
from spt_tf.data.pseudo_pairs.masks import (
    _F,
    _LIMBS,
    _NONE,
    _TORSO,
    NUM_PARTS,
    _head_square,
    _limb_rect,
    body_scale,
    part_presence,
    present,
)
from spt_tf.data.pseudo_pairs.settings import SearchSettings
from spt_tf.labels import NUM_LABELS

_TORSO_SUB = 3  # nearest samples per torso descriptor cell side


def normalized_poses(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints centred on the torso and divided by the body scale.

    Centre: the mean of the visible hips and shoulders (all visible joints when none is).
    Scale: :func:`body_scale`; without a hip-shoulder pair, a third of the visible joints'
    vertical extent (a standing person's torso is about a third of it); 1 if that is 0 too.

    Args:
      keypoints: [N, 18, 2] (y, x), -1 missing.

    Returns:
      (coords [N, 18, 2] float32, 0 at missing joints; visible [N, 18] float32 in {0, 1}).
    """
    kp = np.asarray(keypoints, _F).reshape(-1, 18, 2)
    vis = present(kp)
    torso = np.zeros(18, bool)
    torso[list(_TORSO)] = True
    use = vis & torso[None]
    use = np.where(use.any(1, keepdims=True), use, vis)
    center = (kp * use[..., None]).sum(1) / np.maximum(use.sum(1), 1)[:, None]
    st = body_scale(kp)
    ys = np.where(vis, kp[..., 0], np.nan)
    with np.errstate(all="ignore"):
        extent = np.nan_to_num(np.nanmax(ys, 1) - np.nanmin(ys, 1)) / 3.0
    scale = np.where(st > 0, st, np.where(extent > 0, extent, 1.0)).astype(_F)
    z = (kp - center[:, None]) / scale[:, None, None]
    z = np.where(vis[..., None], z, 0).astype(_F)
    return z, vis.astype(_F)


def pose_distances(za, va, zb, vb, min_common: int = 3) -> np.ndarray:
    """RMS distance of the joints visible in both poses, normalised (matrix products).

    Args:
      za, va: [A, 18, 2], [A, 18] from :func:`normalized_poses`; zb, vb likewise [B, ...].
      min_common: fewer common joints than this give ``inf`` (incomparable: not "the same
        pose").

    Returns:
      [A, B] float32 distances in body-scale units.
    """
    za2 = za.reshape(len(za), -1)
    zb2 = zb.reshape(len(zb), -1)
    na = (za * za).sum(-1)  # [A, 18]
    nb = (zb * zb).sum(-1)
    sq = na @ vb.T + va @ nb.T - 2.0 * (za2 @ zb2.T)
    count = va @ vb.T
    d = np.sqrt(np.maximum(sq, 0) / np.maximum(count, 1))
    return np.where(count >= min_common, d, np.inf).astype(_F)


def _unit_grid(rows: int, cols: int, sub: int) -> np.ndarray:
    """Sample points (u, v) in [0, 1]^2, cell-major: [rows * cols * sub * sub, 2]."""
    cu = (np.arange(rows)[:, None, None, None] + (np.arange(sub)[None, None, :, None] + 0.5) / sub) / rows
    cv = (np.arange(cols)[None, :, None, None] + (np.arange(sub)[None, None, None, :] + 0.5) / sub) / cols
    u, v = np.broadcast_arrays(cu, cv)
    return np.stack([u.ravel(), v.ravel()], -1).astype(_F)


@dataclasses.dataclass
class Descriptors:
    """Low-resolution canonical part descriptors: approximate Eq. 1 costs ``U @ V.T``.

    Attributes:
      u: [N, D] float32, the image as a source.
      v: [N, D] float32, the image as a candidate.
    """

    u: np.ndarray
    v: np.ndarray

    def costs(self, sources: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """[len(sources), len(candidates)] approximate costs."""
        return self.u[sources] @ self.v[candidates].T


def _top_directions(x: np.ndarray, rank: int, seed: int = 0) -> np.ndarray:
    """[d, rank] orthonormal top right-singular directions of x [n, d] (randomised SVD).

    A Gaussian sketch refined by one power iteration, then the SVD of the small [n, rank +
    16] product: a full LAPACK SVD of x takes minutes on a shared 2-core machine.
    """
    x = np.asarray(x, _F)
    k = min(rank + 16, x.shape[1])
    omega = np.random.default_rng(seed).standard_normal((x.shape[1], k)).astype(_F)
    q = np.linalg.qr(x.T @ (x @ omega))[0]
    q = np.linalg.qr(x.T @ (x @ q))[0]
    _, _, vt = np.linalg.svd(x @ q, full_matrices=False)
    return np.ascontiguousarray((q @ vt.T)[:, :rank], _F)


def reference_pose(keypoints: np.ndarray) -> np.ndarray:
    """Per-joint median of the poses with a full torso: the torso descriptor's frame; [18, 2]."""
    kp = np.asarray(keypoints, _F)
    full = np.all(present(kp)[:, list(_TORSO)], 1)
    if not full.any():
        raise ValueError("no pose has all four torso joints (hips, shoulders): cannot build the torso reference frame")
    sel = kp[full]
    out = np.full((18, 2), -1, _F)
    for j in range(18):
        ok = present(sel[:, j])
        if ok.any():
            out[j] = np.median(sel[ok, j], 0)
    return out


def _part_frames(
    kp: np.ndarray, ref_frame: np.ndarray | None, torso_affine: np.ndarray | None, part: int
) -> tuple[np.ndarray, np.ndarray]:
    """Affine frames [N, 2, 3] mapping (u, v) in [0, 1]^2 to (y, x) image pixels; ok [N]."""
    n = len(kp)
    frames = np.zeros((n, 2, 3), _F)
    if part == 0:
        # ref_frame: (y0, x0, height, width) of the grid region in the reference image;
        # torso_affine [N, 8] maps reference (x, y) to image (x, y).
        y0, x0, hh, ww = ref_frame
        a0, a1, a2, b0, b1, b2 = (torso_affine[:, i] for i in range(6))
        # Image point of reference point (y0 + u hh, x0 + v ww).
        frames[:, 0] = np.stack([b1 * hh, b0 * ww, b0 * x0 + b1 * y0 + b2], -1)
        frames[:, 1] = np.stack([a1 * hh, a0 * ww, a0 * x0 + a1 * y0 + a2], -1)
        ok = part_presence(kp)[:, 0]
        return frames, ok
    if part == 1:
        for i in range(n):
            c, half, ok_i = _head_square(kp[i])
            frames[i] = [[2 * half, 0, c[0] - half], [0, 2 * half, c[1] - half]]
        return frames, part_presence(kp)[:, 1]
    fr, to, inc = _LIMBS[part - 2]
    st = body_scale(kp)
    p0, p1, hw = _limb_rect(kp[:, fr], kp[:, to], st[:, None], inc)
    d = p1 - p0
    norm = np.maximum(np.sqrt((d * d).sum(-1, keepdims=True)), _F(1e-6))
    nrm = np.stack([-d[:, 1], d[:, 0]], -1) / norm  # unit normal (y, x)
    origin = p0 - nrm * hw
    across = 2 * nrm * hw
    frames[:, :, 0] = d
    frames[:, :, 1] = across
    frames[:, :, 2] = origin
    return frames, part_presence(kp)[:, part]


def build_descriptors(
    maps: np.ndarray,
    keypoints: np.ndarray,
    settings: SearchSettings,
    reference: np.ndarray | None = None,
    batch: int = 256,
    progress: bool = False,
) -> Descriptors:
    """Canonical low-resolution part descriptors of every map (the pre-filter's features).

    Each part's content is resampled into a canonical frame (torso: a torso-aligned grid over
    the reference image plus a margin; limbs: the mask rectangle in (along, across) cells;
    head: the mask square), cells averaging a few nearest-neighbour samples of the one-hot
    map. With per-part weights (candidate pixels per cell), the sum over parts of weighted
    squared cell differences, plus the missing-part and missing-torso terms of
    :func:`eq1_costs`, is written as the dot product ``U[s] . V[c]``.

    Args:
      maps: [N, H, W] uint8 labels.
      keypoints: [N, 18, 2].
      settings: cell counts and the cost options.
      reference: [18, 2] torso reference pose; :func:`reference_pose` of ``keypoints`` if None.
      batch: images per vectorised step.
      progress: show a tqdm bar.

    Returns:
      :class:`Descriptors`.
    """
    maps = np.asarray(maps)
    n, h, w = maps.shape
    kp = np.asarray(keypoints, _F)
    if reference is None:
        reference = reference_pose(kp)
    tr = settings.torso_cells
    tc = max(2, int(round(tr * w / h)))
    margin = 0.125
    ref_frame = (-margin * h, -margin * w, (1 + 2 * margin) * h, (1 + 2 * margin) * w)
    # Reference -> image torso affines (geometry.part_transforms(image, reference)[:, 0]).
    torso_affine = transforms_for(kp, np.repeat(reference[None], n, 0))[:, 0]
    lu, lv = settings.limb_cells
    hc = settings.head_cells
    grids = [(tr, tc, _TORSO_SUB), (hc, hc, 2)] + [(lu, lv, 2)] * 8
    units = [_unit_grid(r, c, s) for r, c, s in grids]
    cells = [r * c for r, c, _ in grids]
    fill = [0 if settings.outside_is_background else _NONE] + [_NONE] * 9
    eye = np.concatenate([np.eye(NUM_LABELS, dtype=_F), np.zeros((1, NUM_LABELS), _F)])

    frames, oks = zip(*[_part_frames(kp, ref_frame, torso_affine, j) for j in range(NUM_PARTS)])
    presence = part_presence(kp)
    fg = (maps != 0).reshape(n, -1).sum(1).astype(_F)
    torso_missing_cost = 2.0 * fg if settings.outside_is_background else np.full(n, h * w, _F)

    def blocks(idx):
        """Per part: one-hot cell means [b, cells * L], weights [b], squared norms [b]."""
        b = len(idx)
        bm = np.asarray(maps[idx]).reshape(b, -1)
        out = []
        for j in range(NUM_PARTS):
            fj = frames[j][idx]
            pts = units[j]
            py = fj[:, 0, 0, None] * pts[None, :, 0] + fj[:, 0, 1, None] * pts[None, :, 1] + fj[:, 0, 2, None]
            px = fj[:, 1, 0, None] * pts[None, :, 0] + fj[:, 1, 1, None] * pts[None, :, 1] + fj[:, 1, 2, None]
            yi = np.floor(py + 0.5).astype(np.int64)
            xi = np.floor(px + 0.5).astype(np.int64)
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            lab = np.take_along_axis(bm, np.where(inside, yi * w + xi, 0), 1)
            lab = np.where(inside, lab, fill[j]).astype(np.int64)
            lab = np.where(lab == _NONE, NUM_LABELS, lab)
            onehot = eye[lab].reshape(b, cells[j], -1, NUM_LABELS).mean(2)  # [b, cells, L]
            ok = oks[j][idx]
            flat = (onehot * ok[:, None, None]).reshape(b, -1)
            det = np.abs(fj[:, 0, 0] * fj[:, 1, 1] - fj[:, 0, 1] * fj[:, 1, 0])
            wj = np.where(ok, det / cells[j], 0).astype(_F)
            out.append((flat, wj, (flat * flat).sum(1)))
        return out

    # Projections of each part's cell vectors on their principal directions (uncentred SVD
    # of a spread sample of 1,000 maps): the cross terms D_s . D_c become short dot
    # products; the norms stay exact.
    ranks = [settings.descriptor_rank[0]] + [settings.descriptor_rank[1]] * (NUM_PARTS - 1)
    proj = [None] * NUM_PARTS
    if any(r > 0 for r in ranks):
        sample = np.unique(np.linspace(0, n - 1, min(n, 1000)).astype(np.int64))
        for j, (flat, _, _) in enumerate(blocks(sample)):
            if 0 < ranks[j] < flat.shape[1]:
                proj[j] = _top_directions(flat, ranks[j])
    widths = [c * NUM_LABELS if p is None else p.shape[1] for c, p in zip(cells, proj)]
    dim = sum(widths) + NUM_PARTS + 3 + (NUM_PARTS - 1)
    u_all = np.zeros((n, dim), _F)
    v_all = np.zeros((n, dim), _F)
    it = range(0, n, batch)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="descriptors", unit="batch")
    for s0 in it:
        sl = slice(s0, min(s0 + batch, n))
        b = sl.stop - sl.start
        off = 0
        norms = np.zeros((b, NUM_PARTS), _F)
        weights = np.zeros((b, NUM_PARTS), _F)
        for j, (flat, wj, sq) in enumerate(blocks(np.arange(sl.start, sl.stop))):
            if proj[j] is not None:
                flat = flat @ proj[j]
            u_all[sl, off : off + widths[j]] = flat
            v_all[sl, off : off + widths[j]] = -2.0 * wj[:, None] * flat
            off += widths[j]
            norms[:, j] = sq
            weights[:, j] = wj
        cand_norm = weights * norms
        ok0 = oks[0][sl].astype(_F)
        # Source-side scalars: per-part norms, torso ok, torso missing, 1, penalties.
        u_all[sl, off : off + NUM_PARTS] = norms
        v_all[sl, off : off + NUM_PARTS] = weights
        off += NUM_PARTS
        miss_cost = torso_missing_cost[sl]
        c_torso = np.where(ok0 > 0, cand_norm[:, 0], miss_cost)
        u_all[sl, off] = ok0
        v_all[sl, off] = c_torso
        u_all[sl, off + 1] = 1 - ok0
        v_all[sl, off + 1] = miss_cost
        u_all[sl, off + 2] = 1
        v_all[sl, off + 2] = cand_norm[:, 1:].sum(1)
        off += 3
        if settings.missing_part_penalty:
            area = weights[:, 1:] * np.array(cells[1:], _F)[None]  # part mask areas
            u_all[sl, off:] = presence[sl, 1:] * area
            v_all[sl, off:] = ~presence[sl, 1:]
    return Descriptors(u_all, v_all)


def prefilter(
    desc: Descriptors,
    keypoints: np.ndarray,
    groups: np.ndarray,
    identities: np.ndarray | None,
    settings: SearchSettings,
    progress: bool = False,
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-K admissible candidates of every source by the approximate cost.

    Admissible: same clothing group, not the same image, pose distance >= the threshold,
    and another identity when ``identities`` is given and the settings exclude it.

    Args:
      desc: descriptors of all N maps.
      keypoints: [N, 18, 2].
      groups: [N] clothing group ids.
      identities: [N] identity ids, or None.
      settings: min_pose_distance, exclude_same_identity, block, and ``k``.
      progress: show a tqdm bar.
      k: candidates per source; default ``settings.prefilter_k`` (or ``top_k`` without a
        coarse stage, see :func:`candidates_per_source`).

    Returns:
      (candidates [N, K] int64, -1 padded; approximate costs [N, K] float32, inf padded),
      each row sorted by approximate cost (ties by index).
    """
    n = len(groups)
    if k is None:
        k = settings.prefilter_k
    cand = np.full((n, k), -1, np.int64)
    approx = np.full((n, k), np.inf, _F)
    z, vis = normalized_poses(keypoints)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="pre-filter", unit="map")
    for g in np.unique(groups):
        members = np.nonzero(groups == g)[0]
        for b0 in range(0, len(members), settings.block):
            src = members[b0 : b0 + settings.block]
            cost = desc.costs(src, members)
            bad = pose_distances(z[src], vis[src], z[members], vis[members]) < settings.min_pose_distance
            bad |= src[:, None] == members[None, :]
            if identities is not None and settings.exclude_same_identity:
                bad |= identities[src][:, None] == identities[members][None, :]
            cost = np.where(bad, np.inf, cost).astype(_F)
            kk = min(k, len(members))
            part = (
                np.argpartition(cost, kk - 1, axis=1)[:, :kk]
                if kk < len(members)
                else np.broadcast_to(np.arange(len(members)), cost.shape)
            )
            pc = np.take_along_axis(cost, part, 1)
            # Sort by (cost, index) for a deterministic order.
            order = np.lexsort((members[part], pc), axis=1)
            part = np.take_along_axis(part, order, 1)
            pc = np.take_along_axis(pc, order, 1)
            idx = np.where(np.isfinite(pc), members[part], -1)
            cand[src, :kk] = idx
            approx[src, :kk] = pc
            if bar is not None:
                bar.update(len(src))
    if bar is not None:
        bar.close()
    return cand, approx
