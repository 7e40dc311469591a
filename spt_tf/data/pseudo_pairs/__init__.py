"""Pseudo-label search of SPT Eq. 1: for each training map, the best map in another pose.

For a source map ``S_ps`` (keypoints ``p_s``) the pseudo target is the map ``S_p`` of another
training image, in a different pose and of the same clothing type, minimising (Eq. 1)::

    cost(S_ps, S_p) = sum_j || B_j(p) * S_p - f_j(B_j(p_s) * S_ps) ||^2       j = 1..10

over the 10 rigid parts of the deformable skip (``spt_tf.geometry.PART_NAMES``): ``B_j`` the
part masks of :func:`spt_tf.geometry.part_masks`, ``f_j`` the bilinear warp
(:func:`spt_tf.geometry.warp`) by the part's affine :func:`spt_tf.geometry.part_transforms`
``(p_s, p)``, maps compared one-hot (10 channels). ``docs/pseudo_pairs.md`` explains every
decision; in short:

* **Exact cost** (:func:`eq1_costs`): numpy, on label maps (the one-hot algebra written per
  pixel with the 4 bilinear neighbours), each part evaluated only on the window where either
  term can be non-zero. It equals the one-hot TF reference :func:`eq1_costs_reference` (built
  from ``spt_tf.geometry`` verbatim) to float precision; the tests check this.
* **Missing parts**: with ``missing_part_penalty`` (default) a part the candidate lacks costs
  the area of the source's part mask (the literal Eq. 1 would cost nothing there).
* **Candidates** in three stages: (1) every part's content resampled into a canonical frame
  at low resolution (:class:`Descriptors`), weighted so that an approximate Eq. 1 is one
  matrix product ``U[s] @ V[c]``, keeps ``prefilter_k`` candidates per source; (2) the exact
  cost on the maps reduced to a height of about ``coarse_size`` (mode pooling) keeps
  ``top_k``; (3) the exact cost at the maps' resolution chooses.
* **Admissible candidates**: another image, same clothing type (:mod:`spt_tf.data.clothing`),
  normalised pose distance (:func:`pose_distances`) of at least ``min_pose_distance``, and,
  when identities are given and ``exclude_same_identity``, another identity.

Modules (every name below is also importable from this package):

* ``masks``: joint presence, body scale, the part masks ``B_j`` in numpy.
* ``windows``: the polygons and pixel spans where a part's term can be non-zero.
* ``cost``: the part transforms, the exact Eq. 1 and its TensorFlow reference.
* ``settings``: :class:`SearchSettings`.
* ``descriptors``: normalised poses and pose distances, descriptors, the pre-filter.
* ``clothing_groups``: clothing types of the maps and their vote per identity.
* ``matching``: the coarse and exact re-ranking, and the in-memory :func:`search`.
* ``runner``: the resumable multiprocess :func:`run_search`.
* ``tables``: the ``from,to,cost`` CSV, identities, loading a split's maps.
* ``cli`` (and ``__main__``): ``python -m spt_tf.data.pseudo_pairs``.

TensorFlow is imported only where part transforms or the reference are computed, so that
importing this package (as the worker processes do) does not load it.
"""

from spt_tf.data.pseudo_pairs.cli import main
from spt_tf.data.pseudo_pairs.clothing_groups import _group_ids as _group_ids
from spt_tf.data.pseudo_pairs.clothing_groups import clothing_types, vote_clothing
from spt_tf.data.pseudo_pairs.cost import (
    eq1_costs,
    eq1_costs_pairs,
    eq1_costs_reference,
    transforms_for,
)
from spt_tf.data.pseudo_pairs.descriptors import (
    Descriptors,
    build_descriptors,
    normalized_poses,
    pose_distances,
    prefilter,
    reference_pose,
)
from spt_tf.data.pseudo_pairs.descriptors import _top_directions as _top_directions
from spt_tf.data.pseudo_pairs.masks import (
    NUM_PARTS,
    body_scale,
    part_mask_at,
    part_masks,
    part_presence,
    present,
)
from spt_tf.data.pseudo_pairs.matching import _chunk_transforms as _chunk_transforms
from spt_tf.data.pseudo_pairs.matching import _table_costs as _table_costs
from spt_tf.data.pseudo_pairs.matching import (
    candidates_per_source,
    coarse_factor,
    mode_pool,
    rerank,
    search,
)
from spt_tf.data.pseudo_pairs.runner import peak_rss_mb, run_search
from spt_tf.data.pseudo_pairs.settings import SearchSettings
from spt_tf.data.pseudo_pairs.tables import load_dataset, read_identities, read_pseudo_pairs
from spt_tf.labels import NUM_LABELS

__all__ = [
    "NUM_LABELS",
    "NUM_PARTS",
    "Descriptors",
    "SearchSettings",
    "body_scale",
    "build_descriptors",
    "candidates_per_source",
    "clothing_types",
    "coarse_factor",
    "eq1_costs",
    "eq1_costs_pairs",
    "eq1_costs_reference",
    "load_dataset",
    "main",
    "mode_pool",
    "normalized_poses",
    "part_mask_at",
    "part_masks",
    "part_presence",
    "peak_rss_mb",
    "pose_distances",
    "prefilter",
    "present",
    "read_identities",
    "read_pseudo_pairs",
    "reference_pose",
    "rerank",
    "run_search",
    "search",
    "transforms_for",
    "vote_clothing",
]
