"""The on-disk cache of the real targets' FID statistics (docs/evaluation.md, "FID statistics cache").

One ``.npz`` per dataset, split, image size and Inception weights / input
size, holding a :class:`FeatureStatistics` and the metadata it was computed
under; any difference in the metadata (another pairs list, root, version of
this format) means recomputing and overwriting.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

from absl import logging

from spt_tf.evaluation.feature_statistics import FeatureStatistics

# Part of every file's metadata: raising it invalidates every cached file.
CACHE_VERSION = 1


def cache_path(cache_dir: str, config, split: str, tag: str) -> str:
    """The cache file of ``config``'s dataset and image size, ``split`` and the Inception ``tag``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(config.data.name))
    return os.path.join(cache_dir, f"fid_stats_{name}_{split}_{config.data.height}x{config.data.width}_{tag}.npz")


def cache_metadata(config, split: str, pairs: list[tuple[str, str]], tag: str) -> dict:
    """What a cached file must have been computed under to be reused.

    Args:
      config: the run config (data.name, data.root, data.height, data.width).
      split: "test" or "train".
      pairs: the evaluated (source, target) names, in order.
      tag: the Inception weights and input size (:attr:`InceptionFeatures.cache_tag`).

    Returns:
      A JSON-able dict; the SHA-1 of the pairs list makes ``--max_pairs`` and
      an edited pairs file miss the cache.
    """
    pairs_sha1 = hashlib.sha1("\n".join(f"{a},{b}" for a, b in pairs).encode()).hexdigest()
    return {
        "version": CACHE_VERSION,
        "dataset": str(config.data.name),
        "split": split,
        "root": os.path.abspath(str(config.data.root)),
        "height": int(config.data.height),
        "width": int(config.data.width),
        "pairs_sha1": pairs_sha1,
        "num_pairs": len(pairs),
        "inception": tag,
    }


def load_real_statistics(path: str, meta: dict) -> FeatureStatistics | None:
    """The cached statistics at ``path`` when computed under ``meta``; None (logged why) otherwise."""
    if not os.path.isfile(path):
        logging.info("evaluate: no cached real FID statistics at %s; computing them", path)
        return None
    try:
        stats, cached = FeatureStatistics.load(path)
    except (OSError, ValueError, KeyError) as e:
        logging.warning("evaluate: unreadable FID statistics %s (%s); recomputing", path, e)
        return None
    if cached != meta:
        diff = sorted(k for k in set(cached) | set(meta) if cached.get(k) != meta.get(k))
        logging.info("evaluate: cached FID statistics %s differ in %s; recomputing", path, diff)
        return None
    logging.info("evaluate: real FID statistics from the cache %s", path)
    return stats


@dataclasses.dataclass
class RealStatistics:
    """The real targets' FID statistics of one evaluation run.

    Attributes:
      path: the cache file.
      meta: its metadata (:func:`cache_metadata`).
      stats: the statistics: complete when read from the cache, empty (to be
        fed the real targets' features) otherwise.
      status: ``"cached"`` or ``"computed"``.
    """

    path: str
    meta: dict
    stats: FeatureStatistics
    status: str

    @property
    def to_compute(self) -> bool:
        """The statistics are not from the cache: feed them, then :meth:`store` them."""
        return self.status == "computed"

    def store(self) -> None:
        """Writes the computed statistics to the cache file."""
        self.stats.save(self.path, self.meta)
        logging.info("evaluate: real FID statistics cached in %s", self.path)


def real_statistics(cache_dir: str, config, split: str, pairs: list[tuple[str, str]], tag: str) -> RealStatistics:
    """The real statistics for these pairs: from the cache in ``cache_dir`` (created), or empty.

    Args:
      cache_dir: the cache folder.
      config, split, pairs, tag: as :func:`cache_metadata` takes them.

    Returns:
      A :class:`RealStatistics`, ``status`` ``"cached"`` or ``"computed"``.
    """
    os.makedirs(cache_dir, exist_ok=True)
    path = cache_path(cache_dir, config, split, tag)
    meta = cache_metadata(config, split, pairs, tag)
    stats = load_real_statistics(path, meta)
    if stats is not None:
        return RealStatistics(path, meta, stats, "cached")
    return RealStatistics(path, meta, FeatureStatistics(), "computed")
