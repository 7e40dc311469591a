"""The exact Eq. 1 cost (numpy) and its literal one-hot reference (TensorFlow).

* :func:`eq1_costs_pairs` / :func:`eq1_costs`: numpy on label maps, the one-hot algebra
  written per pixel with the 4 bilinear neighbours, each part evaluated only on the window
  where either term can be non-zero (:mod:`spt_tf.data.pseudo_pairs.windows`).
* :func:`eq1_costs_reference`: Eq. 1 built from ``spt_tf.geometry`` verbatim on one-hot
  tensors; the two agree to float precision (the tests check this).
* **Missing parts**: the literal Eq. 1 costs nothing for a part the *candidate* lacks (its
  mask is empty and its transform samples nothing), so it would favour candidates with few
  visible limbs. With ``missing_part_penalty`` (default) such a part costs the area of the
  source's part mask, the mirror of what the literal formula already charges when the
  *source* lacks it.

TensorFlow is imported only where the part transforms or the reference are computed.
"""

from __future__ import annotations

import numpy as np

from spt_tf.data.pseudo_pairs.masks import (
    _F,
    _INC_FROM,
    _LIMB_HALF_WIDTH,
    _LIMBS,
    _NONE,
    NUM_PARTS,
    _flat_part_mask,
    _head_square,
    _head_squares,
    _limb_params,
    _segment_rect,
    body_scale,
    part_presence,
    present,
)
from spt_tf.data.pseudo_pairs.windows import (
    _box_quad,
    _fg_hull,
    _grow_quad,
    _pad_polygons,
    _part_quads,
    _preimage,
    _quad_spans,
)
from spt_tf.labels import NUM_LABELS

_TRANSFORMS_FN = None  # tf.function of geometry.part_transforms, built on first use


def transforms_for(source_keypoints: np.ndarray, candidate_keypoints: np.ndarray, batch: int = 8192) -> np.ndarray:
    """``geometry.part_transforms(source, candidate)`` in batches; [P, 10, 8] float32.

    Maps a pixel of the candidate pose to the source pixel it samples (output -> input).

    Args:
      source_keypoints, candidate_keypoints: [P, 18, 2].
      batch: pairs per TensorFlow call.
    """
    global _TRANSFORMS_FN
    if _TRANSFORMS_FN is None:
        import tensorflow as tf  # TensorFlow only where transforms are made

        from spt_tf import geometry

        spec = tf.TensorSpec([None, 18, 2], tf.float32)
        _TRANSFORMS_FN = tf.function(geometry.part_transforms, input_signature=[spec, spec])
    src = np.asarray(source_keypoints, _F).reshape(-1, 18, 2)
    cand = np.asarray(candidate_keypoints, _F).reshape(-1, 18, 2)
    if len(src) != len(cand):
        raise ValueError(f"{len(src)} source poses for {len(cand)} candidate poses")
    out = np.empty((len(src), NUM_PARTS, 8), _F)
    for i in range(0, len(src), batch):
        out[i : i + batch] = _TRANSFORMS_FN(src[i : i + batch], cand[i : i + batch]).numpy()
    return out


def _flat_cost(padded, uniform, plane, transforms, cand_flat, hw_size, runs, cand_index, cand_mask_fn, n_pairs):
    """Per-pair sums of ``||B * onehot(L) - bilinear_warp(masked source)||^2`` over pixel runs.

    Args:
      padded, uniform: [S, 10, H + 5, W + 5] source part labels / uniform-block flags
        (:func:`_padded_part_labels`), read through ``plane``.
      plane: [n_pairs] offset of each pair's source part plane in ``padded.ravel()``.
      transforms: [n_pairs, 8] candidate -> source.
      cand_flat: [C * H * W] uint8 candidate labels; cand_index: [n_pairs] candidate of a pair.
      hw_size: (H, W).
      runs: (pair [R], y [R], x0 [R], length [R]) row runs of pixels to evaluate.
      cand_mask_fn: None (torso: mask of ones) or fn(cand [P], yy, xx) -> bool [P].
      n_pairs: number of pairs (length of the output).

    Returns:
      [n_pairs] float64.
    """
    h, w = hw_size
    wp = padded.shape[-1]
    t = transforms.astype(_F)
    row_pair, row_y, row_x0, row_w = runs
    ry = row_y.astype(_F)
    starts = np.cumsum(row_w) - row_w
    local = np.arange(int(row_w.sum())) - np.repeat(starts, row_w)
    x = np.repeat(row_x0, row_w) + local
    # geometry._apply / sample_bilinear in float32, the per-row part (a1 * y + a2) once per
    # row (a rounding order that differs from TF's by an ulp at most).
    xf = x.astype(_F)
    sx = np.repeat(t[row_pair, 0], row_w) * xf + np.repeat(t[row_pair, 1] * ry + t[row_pair, 2], row_w)
    sy = np.repeat(t[row_pair, 3], row_w) * xf + np.repeat(t[row_pair, 4] * ry + t[row_pair, 5], row_w)
    # Shifted by the 2-px border and clipped into it: far-away samples land on blocks of
    # border values only (uniform), so the truncation below is the floor wherever it matters.
    sxc = np.clip(sx, _F(-2), _F(w)) + _F(2)
    syc = np.clip(sy, _F(-2), _F(h)) + _F(2)
    xi = sxc.astype(np.int64)
    yi = syc.astype(np.int64)
    base = np.repeat(plane[row_pair], row_w) + yi * wp + xi
    row_lin = (cand_index[row_pair] * h + row_y) * w + row_x0
    lab = cand_flat[np.repeat(row_lin, row_w) + local]
    flat = padded.reshape(-1)
    l00 = flat[base]
    uni = uniform.reshape(-1)[base]
    # A uniform 2x2 block: the warped vector is e_l (weights sum to 1), or 0 for _NONE.
    valid = l00 != _NONE
    if cand_mask_fn is None:
        bm = None
        px = np.where(valid, np.where(l00 == lab, _F(0), _F(2)), _F(1))
    else:
        bm = cand_mask_fn(np.repeat(cand_index[row_pair], row_w), np.repeat(ry, row_w), xf).astype(_F)
        px = np.where(valid, bm - _F(2) * bm * (l00 == lab) + _F(1), bm)
    sel = np.nonzero(~uni)[0]
    if len(sel):
        # Non-uniform blocks are never clipped, so these are sx - floor(sx), sy - floor(sy).
        fx = sxc[sel] - xi[sel]
        fy = syc[sel] - yi[sel]
        bs = base[sel]
        labs = (flat[bs], flat[bs + 1], flat[bs + wp], flat[bs + wp + 1])
        wts = ((1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx)
        wts = [np.where(lb != _NONE, wt, _F(0)) for lb, wt in zip(labs, wts)]
        # ||w||^2 of the warped one-hot vector sum_k w_k e_{l_k}.
        self_sq = wts[0] * wts[0] + wts[1] * wts[1] + wts[2] * wts[2] + wts[3] * wts[3]
        for a in range(4):
            for b in range(a + 1, 4):
                self_sq = self_sq + np.where(labs[a] == labs[b], _F(2) * wts[a] * wts[b], _F(0))
        ls = lab[sel]
        match = sum(np.where(lb == ls, wt, _F(0)) for lb, wt in zip(labs, wts))
        if bm is None:
            px[sel] = _F(1) - _F(2) * match + self_sq
        else:
            bsm = bm[sel]
            px[sel] = bsm - _F(2) * bsm * match + self_sq
    # Per-run sums (float32 over at most a row), then per pair in float64.
    return np.bincount(row_pair, weights=np.add.reduceat(px, starts), minlength=n_pairs)


def _uniform_blocks(a: np.ndarray) -> np.ndarray:
    """[h, w] -> [h - 1, w - 1] bool: the 2x2 block with top-left corner here has one value."""
    t = a[:-1, :-1]
    return (t == a[:-1, 1:]) & (t == a[1:, :-1]) & (t == a[1:, 1:])


def _padded_part_labels(labels: np.ndarray, keypoints: np.ndarray, outside_is_background: bool):
    """Source labels per part, padded for clipped bilinear gathers.

    Returns:
      padded [10, H + 5, W + 5] uint8 (part j: labels inside ``B_j``, ``_NONE`` elsewhere;
      a frame 2 px wide on the top/left and 3 px on the bottom/right holding ``_NONE``, or
      background for the torso with ``outside_is_background``);
      uniform [10, H + 5, W + 5] bool (the 2x2 block with top-left corner here has one label);
      ok [10] (the part has a non-empty mask; the torso always);
      areas [10] mask pixel counts.
    """
    h, w = labels.shape
    out = np.full((NUM_PARTS, h + 5, w + 5), _NONE, np.uint8)
    uni = np.ones(out.shape, bool)
    ok = np.zeros(NUM_PARTS, bool)
    areas = np.zeros(NUM_PARTS)
    if outside_is_background:
        out[0] = 0
    out[0, 2 : h + 2, 2 : w + 2] = labels
    uni[0, :-1, :-1] = _uniform_blocks(out[0])
    ok[0] = True
    areas[0] = h * w
    # Part geometry of this pose once (the float32 formulas of part_mask_at / geometry).
    kp = np.asarray(keypoints, _F)
    vis = present(kp)
    st = body_scale(kp[None])[0]
    center, half, head_ok = _head_square(kp)
    fr = np.array([a for a, _, _ in _LIMBS])
    to = np.array([b for _, b, _ in _LIMBS])
    inc = np.array([[c] for _, _, c in _LIMBS], _F)
    fr2 = kp[fr] + (kp[fr] - kp[to]) * _F(_INC_FROM)
    to2 = kp[to] + (kp[to] - fr2) * inc
    hw = _F(_LIMB_HALF_WIDTH) * st
    limb_ok = vis[fr] & vis[to] & (st > 0)
    for j in range(1, NUM_PARTS):
        if j == 1:
            if not head_ok:
                continue
            b = (center[0] - half, center[0] + half, center[1] - half, center[1] + half)
        else:
            i = j - 2
            if not limb_ok[i]:
                continue
            b = (
                min(fr2[i, 0], to2[i, 0]) - hw,
                max(fr2[i, 0], to2[i, 0]) + hw,
                min(fr2[i, 1], to2[i, 1]) - hw,
                max(fr2[i, 1], to2[i, 1]) + hw,
            )
        y0, y1 = max(int(np.floor(b[0])) - 1, 0), min(int(np.ceil(b[1])) + 2, h)
        x0, x1 = max(int(np.floor(b[2])) - 1, 0), min(int(np.ceil(b[3])) + 2, w)
        if y1 <= y0 or x1 <= x0:
            continue
        yy = np.arange(y0, y1, dtype=_F)[:, None]
        xx = np.arange(x0, x1, dtype=_F)[None, :]
        if j == 1:
            m = (np.abs(yy - center[0]) <= half) & (np.abs(xx - center[1]) <= half)
        else:
            m = _segment_rect(yy, xx, fr2[i], to2[i], hw)
        if not m.any():
            continue
        out[j, y0 + 2 : y1 + 2, x0 + 2 : x1 + 2] = np.where(m, labels[y0:y1, x0:x1], _NONE)
        # Blocks touching the window start one pixel above / left of it; all others hold
        # _NONE only (uniform, already set).
        win = out[j, y0 + 1 : y1 + 3, x0 + 1 : x1 + 3]
        uni[j, y0 + 1 : y1 + 2, x0 + 1 : x1 + 2] = _uniform_blocks(win)
        ok[j] = True
        areas[j] = m.sum()
    return out, uni, ok, areas


def eq1_costs_pairs(
    source_labels: np.ndarray,
    source_keypoints: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_keypoints: np.ndarray,
    pair_source: np.ndarray,
    pair_candidate: np.ndarray,
    transforms: np.ndarray | None = None,
    missing_part_penalty: bool = True,
    outside_is_background: bool = True,
    pixel_budget: int = 1 << 17,
    per_part: bool = False,
) -> np.ndarray:
    """Exact Eq. 1 costs of many (source, candidate) pairs, vectorised over the pairs.

    Args:
      source_labels: [S, H, W] uint8 labels 0..9; source_keypoints: [S, 18, 2] (y, x)
        pixels of these maps, -1 missing.
      candidate_labels: [C, H, W] uint8; candidate_keypoints: [C, 18, 2].
      pair_source: [P] index into the sources; pair_candidate: [P] index into the candidates.
      transforms: [P, 10, 8] ``geometry.part_transforms(source, candidate)`` of each pair;
        computed (TensorFlow) when None.
      missing_part_penalty: add the source part's mask area for every non-torso part the
        source has and the candidate lacks (see the module docstring).
      outside_is_background: in the torso term (whose mask is the whole image), the world
        outside the source map is background instead of the warp's zero fill, so that
        framing (where the person sits in the image) does not enter the cost.
      pixel_budget: window pixels evaluated per vectorised step (bounds the memory).
      per_part: return the [P, 10] terms of the parts (penalties in their part's column).

    Returns:
      [P] float64 costs (sums of squared one-hot differences; 0 for identical aligned maps).
    """
    src = np.asarray(source_labels, np.uint8)
    s_n, h, w = src.shape
    src_kp = np.asarray(source_keypoints, _F).reshape(s_n, 18, 2)
    cand = np.ascontiguousarray(candidate_labels, np.uint8)
    c_n = len(cand)
    if cand.shape[1:] != (h, w):
        raise ValueError(f"candidate maps are {cand.shape[1:]}, sources {(h, w)}")
    cand_kp = np.asarray(candidate_keypoints, _F).reshape(c_n, 18, 2)
    ps = np.asarray(pair_source, np.int64).reshape(-1)
    pc = np.asarray(pair_candidate, np.int64).reshape(-1)
    n = len(ps)
    if len(pc) != n:
        raise ValueError(f"{n} pair sources for {len(pc)} pair candidates")
    if n == 0:
        return np.zeros((0, NUM_PARTS) if per_part else 0)
    if transforms is None:
        transforms = transforms_for(src_kp[ps], cand_kp[pc])
    transforms = np.asarray(transforms, _F).reshape(n, NUM_PARTS, 8)
    used = np.unique(ps)
    plane_of = np.zeros(s_n, np.int64)
    plane_of[used] = np.arange(len(used))
    prep = [_padded_part_labels(src[s], src_kp[s], outside_is_background) for s in used]
    padded = np.stack([p[0] for p in prep])  # [S', 10, Hp, Wp]
    uniform = np.stack([p[1] for p in prep])
    src_ok = np.stack([p[2] for p in prep])[plane_of[ps]]  # [P, 10]
    src_area = np.stack([p[3] for p in prep])[plane_of[ps]]
    hp, wp = padded.shape[-2:]
    cand_flat = cand.reshape(-1)
    costs = np.zeros((n, NUM_PARTS))
    full = np.array([0.0, h - 1.0, 0.0, w - 1.0])
    for j in range(NUM_PARTS):
        plane = (plane_of[ps] * NUM_PARTS + j) * (hp * wp)
        # Where the cost can be non-zero: the candidate's part (torso: foreground, or all)
        # and the pre-image of the source's part grown by the bilinear footprint.
        if j == 0:
            # Torso: the foreground hulls (the rest is background against background).
            if outside_is_background:
                ch = [_fg_hull(c, 1.0) for c in cand]
                sh = [_fg_hull(src[s], 1.5) for s in range(s_n)]
            else:
                ch = [None] * c_n
                sh = [None] * s_n
            whole = _box_quad(full)
            cok = np.array([c is not None or not outside_is_background for c in ch])
            ch = [c if c is not None else whole for c in ch]
            sh = [c if c is not None else whole for c in sh]
            v = max(len(c) for c in ch + sh)
            cq = _pad_polygons(ch, v)
            sq = _pad_polygons(sh, v)
            pre, pre_ok = _preimage(sq[ps], transforms[:, j])
            cq = cq[pc]
            mask_fn = None
        else:
            cq, cok = _part_quads(cand_kp, j)
            sq = _part_quads(src_kp, j)[0][ps]
            params = _head_squares(cand_kp) if j == 1 else _limb_params(cand_kp, j)

            def mask_fn(c, yy, xx, params=params, j=j):
                return _flat_part_mask(params, j, c, yy, xx)

            pre, pre_ok = _preimage(_grow_quad(sq, 1.5), transforms[:, j])
            cq = _grow_quad(cq[pc], 1.0)
        quads = np.stack([cq, pre], 1)
        qok = np.stack([cok[pc], pre_ok & src_ok[:, j]], 1)
        rp, ry, rx0, rx1 = _quad_spans(quads, qok, h, w)
        npx = np.cumsum(rx1 - rx0)
        cuts = np.searchsorted(npx, np.arange(pixel_budget, npx[-1] if len(npx) else 0, pixel_budget))
        for r in np.split(np.arange(len(npx)), cuts):
            if len(r):
                part_runs = (rp[r], ry[r], rx0[r], rx1[r] - rx0[r])
                costs[:, j] += _flat_cost(
                    padded, uniform, plane, transforms[:, j], cand_flat, (h, w), part_runs, pc, mask_fn, n
                )
    if missing_part_penalty:
        cand_has = part_presence(cand_kp)[pc][:, 1:]
        costs[:, 1:] += (src_ok[:, 1:] & ~cand_has) * src_area[:, 1:]
    return costs if per_part else costs.sum(-1)


def eq1_costs(
    source_labels: np.ndarray,
    source_keypoints: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_keypoints: np.ndarray,
    transforms: np.ndarray | None = None,
    missing_part_penalty: bool = True,
    outside_is_background: bool = True,
) -> np.ndarray:
    """Exact Eq. 1 cost of one source against K candidates (:func:`eq1_costs_pairs`).

    Args:
      source_labels: [H, W] uint8; source_keypoints: [18, 2].
      candidate_labels: [K, H, W] uint8; candidate_keypoints: [K, 18, 2].
      transforms: [K, 10, 8] ``geometry.part_transforms(source, candidate)`` or None.
      missing_part_penalty, outside_is_background: see :func:`eq1_costs_pairs`.

    Returns:
      [K] float64.
    """
    cand = np.asarray(candidate_labels, np.uint8)
    k = len(cand)
    return eq1_costs_pairs(
        np.asarray(source_labels)[None],
        np.asarray(source_keypoints)[None],
        cand,
        candidate_keypoints,
        np.zeros(k, np.int64),
        np.arange(k),
        transforms,
        missing_part_penalty,
        outside_is_background,
    )


_REFERENCE_FN = None  # the reference cost function, built on first use


def _reference_fn():
    """The one-hot Eq. 1 of :func:`eq1_costs_reference` (TensorFlow, imported on first use)."""
    global _REFERENCE_FN
    if _REFERENCE_FN is None:
        import tensorflow as tf

        from spt_tf import geometry

        def fn(src, src_kp, cand, cand_kp, outside_is_background):
            src = tf.convert_to_tensor(src)
            cand = tf.convert_to_tensor(cand)
            b, h, w = tf.shape(src)[0], tf.shape(src)[1], tf.shape(src)[2]
            s1h = geometry.one_hot_parsing(src, NUM_LABELS)
            c1h = geometry.one_hot_parsing(cand, NUM_LABELS)
            hs, ws = src.shape[1], src.shape[2]
            bs = geometry.part_masks(src_kp, hs, ws)  # [B, 10, H, W]
            bc = geometry.part_masks(cand_kp, hs, ws)
            t = geometry.part_transforms(src_kp, cand_kp)  # [B, 10, 8]
            masked = bs[..., None] * s1h[:, None]  # [B, 10, H, W, L]
            warped = geometry.warp(
                tf.reshape(masked, [b * NUM_PARTS, h, w, NUM_LABELS]), tf.reshape(t, [b * NUM_PARTS, 8])
            )
            warped = tf.reshape(warped, [b, NUM_PARTS, h, w, NUM_LABELS])
            # Background where the torso warp samples outside the source (1 - warp of ones).
            inside = geometry.warp(tf.ones([b, h, w, 1]), t[:, 0])
            fill = (1.0 - inside) * tf.one_hot(0, NUM_LABELS) * tf.cast(outside_is_background, tf.float32)
            warped = tf.concat([warped[:, :1] + fill[:, None], warped[:, 1:]], 1)
            diff = bc[..., None] * c1h[:, None] - warped
            return tf.reduce_sum(tf.cast(diff, tf.float64) ** 2, axis=[1, 2, 3, 4]), bs

        # Eager: tracing these ops costs more than the few small batches it serves.
        _REFERENCE_FN = fn
    return _REFERENCE_FN


def eq1_costs_reference(
    source_labels: np.ndarray,
    source_keypoints: np.ndarray,
    candidate_labels: np.ndarray,
    candidate_keypoints: np.ndarray,
    missing_part_penalty: bool = True,
    outside_is_background: bool = True,
) -> np.ndarray:
    """Eq. 1 written literally with ``spt_tf.geometry`` on one-hot maps (TensorFlow).

    The independent reference of :func:`eq1_costs_pairs` (tests, validation):
    ``geometry.part_masks`` for ``B_j``, ``geometry.warp`` by ``geometry.part_transforms``
    for ``f_j``, 10-channel one-hot maps. O(B * 10 * H * W * 10) memory: small batches only.

    Args:
      source_labels: [B, H, W] uint8; source_keypoints: [B, 18, 2].
      candidate_labels: [B, H, W] uint8; candidate_keypoints: [B, 18, 2].
      missing_part_penalty, outside_is_background: as :func:`eq1_costs_pairs`.

    Returns:
      [B] float64.
    """
    src_kp = np.asarray(source_keypoints, _F)
    cand_kp = np.asarray(candidate_keypoints, _F)
    cost, bs = _reference_fn()(
        np.asarray(source_labels, np.uint8),
        src_kp,
        np.asarray(candidate_labels, np.uint8),
        cand_kp,
        bool(outside_is_background),
    )
    cost = cost.numpy()
    if missing_part_penalty:
        bs_np = bs.numpy() > 0
        src_has = part_presence(src_kp)[:, 1:] & bs_np[:, 1:].any((2, 3))
        cand_has = part_presence(cand_kp)[:, 1:]
        cost = cost + ((src_has & ~cand_has) * bs_np[:, 1:].sum((2, 3))).sum(-1)
    return cost
