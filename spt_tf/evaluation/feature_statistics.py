"""Running Inception pool-feature statistics and the FID between two of them.

The Gaussian form of FID and the streaming mean / covariance are
:func:`metrics.frechet_distance` and :class:`metrics.RunningStatistics`; this
module adds the exact low-rank form for few features and the statistics
object that keeps its features while they are few (docs/evaluation.md, FID).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from spt_tf.evaluation import inception as inception_lib
from spt_tf.evaluation import metrics


def frechet_distance_low_rank(act_a, act_b) -> float:
    """FID of two activation sets, exact, without a D x D matrix square root.

    With A, B the centred activations [N, D], [M, D], S1 = AᵀA / (N - 1) and
    S2 = BᵀB / (M - 1): the non-zero eigenvalues of S1 S2 are those of
    (A Bᵀ)(A Bᵀ)ᵀ / ((N - 1)(M - 1)), so tr sqrt(S1 S2) is the sum of the
    singular values of the N x M matrix A Bᵀ over sqrt((N - 1)(M - 1)).
    Equal to :func:`metrics.fid_from_activations` for any N, M, D; cheap when
    N, M << D, which is also where scipy's ``sqrtm`` of the singular product
    is slow and needs its epsilon fix.

    Args:
      act_a: [N, D], act_b: [M, D] activations, N, M >= 2.

    Returns:
      The Frechet distance (float, >= 0 up to round-off).

    Raises:
      ValueError: not two [N >= 2, D] sets of the same D.
    """
    a = np.asarray(act_a, np.float64)
    b = np.asarray(act_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance_low_rank: need [N >= 2, D] sets, got {a.shape}, {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    na, nb = len(a) - 1, len(b) - 1
    cross = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / math.sqrt(na * nb)
    diff = mu_a - mu_b
    return float(diff @ diff + (ca * ca).sum() / na + (cb * cb).sum() / nb - 2.0 * cross)


class FeatureStatistics:
    """Streaming pool-feature statistics for FID.

    A :class:`metrics.RunningStatistics`, plus the activations themselves while
    there are at most ``dim`` of them (then :func:`frechet_distance_low_rank`
    is exact and fast); beyond that they are dropped and FID uses the mean and
    covariance (:func:`metrics.frechet_distance`). Memory: at most
    ``dim x dim`` float32 rows plus the O(dim^2) running sums.

    Attributes:
      dim: the feature dimension D.
      running: the :class:`metrics.RunningStatistics` of every feature seen.
    """

    def __init__(self, dim: int = inception_lib.POOL_DIM):
        self.dim = int(dim)
        self.running = metrics.RunningStatistics(self.dim)
        self._rows: list[np.ndarray] | None = []

    @property
    def count(self) -> int:
        """The number of feature vectors seen."""
        return self.running.count

    def update(self, acts) -> None:
        """Adds a batch of features [n, D]."""
        a = np.asarray(acts, np.float32)
        self.running.update(a)
        if self._rows is not None:
            if self.running.count <= self.dim:
                self._rows.append(a.copy())
            else:
                self._rows = None

    def activations(self) -> np.ndarray | None:
        """[N, D] float32 while N <= dim, else None."""
        if self._rows is None:
            return None
        return np.concatenate(self._rows) if self._rows else np.zeros((0, self.dim), np.float32)

    def save(self, path: str, meta: dict) -> None:
        """Writes the statistics and ``meta`` (JSON-able) to the ``.npz`` file ``path``, atomically."""
        mean, cov = self.running.statistics()
        acts = self.activations()
        tmp = f"{path}.tmp-{os.getpid()}.npz"
        np.savez(
            tmp,
            mean=mean,
            cov=cov,
            count=np.int64(self.count),
            meta=json.dumps(meta, sort_keys=True),
            activations=acts if acts is not None else np.zeros((0, self.dim), np.float32),
            has_activations=np.bool_(acts is not None),
        )
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str) -> tuple[FeatureStatistics, dict]:
        """Reads a file written by :meth:`save`.

        Returns:
          ``(statistics, meta)``.

        Raises:
          OSError, ValueError, KeyError: a missing, unreadable or incomplete file.
        """
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            mean, cov, count = z["mean"], z["cov"], int(z["count"])
            acts = z["activations"] if bool(z["has_activations"]) else None
        out = cls(mean.shape[0])
        # RunningStatistics keeps the count, the mean and the sum of centred
        # outer products (the covariance times count - 1).
        r = out.running
        r.count, r._mean, r._m2 = (
            count,
            mean.astype(np.float64),
            cov.astype(np.float64) * (count - 1),
        )
        out._rows = [acts.astype(np.float32)] if acts is not None else None
        return out, meta


def fid(gen: FeatureStatistics, real: FeatureStatistics) -> float:
    """FID of two :class:`FeatureStatistics` (low-rank exact form when both kept their rows).

    Args:
      gen: the generated images' statistics; real: the real images'.

    Returns:
      The Frechet distance (float).
    """
    a, b = gen.activations(), real.activations()
    if a is not None and b is not None:
        return frechet_distance_low_rank(a, b)
    return metrics.frechet_distance(*gen.running.statistics(), *real.running.statistics())
