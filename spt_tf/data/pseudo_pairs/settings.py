"""The knobs of the pseudo-label search (``docs/pseudo_pairs.md`` discusses each)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Knobs of the search (``docs/pseudo_pairs.md`` discusses each).

    Attributes:
      top_k: candidates per source that get the exact cost at the maps' resolution.
      prefilter_k: candidates per source kept by the descriptor pre-filter; with a coarse
        stage they get the exact cost at reduced resolution, and its best ``top_k`` go on.
      coarse_size: the coarse stage works on the maps reduced by the largest power of two
        that keeps their height >= this (mode pooling; :func:`coarse_factor`); no
        reduction possible (or 0): no coarse stage, the pre-filter's ``top_k`` go on.
      min_pose_distance: candidates whose normalised pose distance (:func:`pose_distances`,
        in body-scale units) to the source is below this are "the same pose" and excluded.
      exclude_same_identity: with identities given, never pair two images of one identity.
      missing_part_penalty: see :func:`eq1_costs`.
      outside_is_background: see :func:`eq1_costs`.
      torso_cells: rows of the torso descriptor grid (columns follow the aspect ratio).
      limb_cells: (along, across) cells of each limb descriptor.
      head_cells: side of the head descriptor grid.
      descriptor_rank: (torso, other parts) lengths the descriptor blocks are projected to
        (principal directions); 0 keeps a block whole.
      block: sources per pre-filter matrix product.
      clothing_vote: when the clothing types are computed from the maps and identities are
        known, each identity's type is the majority of its images' (:func:`vote_clothing`):
        one person wears one outfit, and the views that hide a sleeve are outvoted.
    """

    top_k: int = 8
    prefilter_k: int = 32
    coarse_size: int = 64
    min_pose_distance: float = 0.1
    exclude_same_identity: bool = True
    missing_part_penalty: bool = True
    outside_is_background: bool = True
    torso_cells: int = 24
    limb_cells: tuple[int, int] = (6, 3)
    head_cells: int = 5
    descriptor_rank: tuple[int, int] = (192, 32)
    block: int = 512
    clothing_vote: bool = True

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.prefilter_k < self.top_k:
            raise ValueError(f"prefilter_k ({self.prefilter_k}) must be >= top_k ({self.top_k})")
        if self.coarse_size < 0:
            raise ValueError(f"coarse_size must be >= 0, got {self.coarse_size}")
        if self.min_pose_distance < 0:
            raise ValueError(f"min_pose_distance must be >= 0, got {self.min_pose_distance}")
