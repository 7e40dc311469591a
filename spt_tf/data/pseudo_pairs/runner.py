"""The resumable, chunked, multiprocess search of a whole set (:func:`run_search`).

Worker processes are started with ``spawn`` and never import TensorFlow: the part
transforms are computed in the parent and sent with each chunk; the workers read the maps
through memory maps of the work folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence

import numpy as np

from spt_tf.data.pseudo_pairs.clothing_groups import (
    _count,
    _group_ids,
    clothing_types,
    vote_clothing,
)
from spt_tf.data.pseudo_pairs.descriptors import build_descriptors, prefilter
from spt_tf.data.pseudo_pairs.masks import _F
from spt_tf.data.pseudo_pairs.matching import (
    _chunk_transforms,
    _warn_unmatched,
    candidates_per_source,
    coarse_factor,
    mode_pool,
    rerank,
)
from spt_tf.data.pseudo_pairs.settings import SearchSettings
from spt_tf.data.pseudo_pairs.tables import _write_rows, read_pseudo_pairs


def _fingerprint(names, maps, keypoints, types, identities, settings) -> str:
    """Digest of everything a search result depends on (guards a work folder's reuse)."""
    h = hashlib.sha1()
    h.update(
        json.dumps(
            [
                list(names),
                dataclasses.asdict(settings),
                list(maps.shape[1:]),
                [str(t) for t in types],
                None if identities is None else [str(i) for i in identities],
            ]
        ).encode()
    )
    h.update(np.ascontiguousarray(keypoints, _F).tobytes())
    for i in range(0, len(maps), 1024):
        h.update(np.ascontiguousarray(maps[i : i + 1024]).tobytes())
    return h.hexdigest()


_WORKER: dict = {}


def _worker_init(maps_path: str, coarse_path: str | None, keypoints: np.ndarray, settings: dict) -> None:
    _WORKER["maps"] = np.load(maps_path, mmap_mode="r")
    _WORKER["coarse"] = None if coarse_path is None else np.load(coarse_path, mmap_mode="r")
    _WORKER["kp"] = keypoints
    settings["limb_cells"] = tuple(settings["limb_cells"])
    settings["descriptor_rank"] = tuple(settings["descriptor_rank"])
    _WORKER["settings"] = SearchSettings(**settings)


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (``VmHWM``, Linux), MB; None where unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _worker_chunk(task):
    chunk, sources, cands, transforms = task
    t0 = time.process_time()
    rows = rerank(_WORKER["maps"], _WORKER["kp"], sources, cands, transforms, _WORKER["settings"], _WORKER["coarse"])
    return chunk, len(sources), rows, time.process_time() - t0, peak_rss_mb()


def run_search(
    names: Sequence[str],
    maps: np.ndarray,
    keypoints: np.ndarray,
    out: str,
    settings: SearchSettings = SearchSettings(),
    clothing: Sequence | None = None,
    identities: Sequence | None = None,
    workers: int = 1,
    chunk_size: int = 256,
    work_dir: str | None = None,
    stop_after_chunks: int | None = None,
    keep_work: bool = False,
    progress: bool = True,
) -> dict:
    """Searches the pseudo pairs of a whole set into ``out`` (``from,to,cost``), resumably.

    Work goes to ``work_dir`` (default ``out + ".work"``): the inputs' fingerprint, the maps
    as ``maps.npy`` (read by the worker processes through a memory map), the pre-filter's
    candidates, and one ``chunk-NNNNN.csv`` per ``chunk_size`` sources, each written
    atomically. A killed run started again with the same inputs and settings skips what is
    there and continues; other inputs or settings are refused. When every chunk is there,
    they are merged into ``out`` (atomically) and the work folder is removed.

    Args:
      names: [N] image names.
      maps: [N, H, W] uint8 labels (an array or a memory map).
      keypoints: [N, 18, 2] (y, x) pixels of the maps.
      out: the pairs CSV to write.
      settings: search settings.
      clothing: [N] clothing types, or None to compute them from the maps (and, with
        identities and ``settings.clothing_vote``, vote them per identity).
      identities: [N] identities, or None (unknown).
      workers: processes for the exact re-ranking (1: in this process).
      chunk_size: sources per chunk file.
      work_dir: the work folder.
      stop_after_chunks: stop after writing this many chunks (tests of the resume).
      keep_work: keep the work folder after the merge.
      progress: tqdm bars.

    Returns:
      Summary dict: ``complete``, ``sources``, ``pairs``, ``unmatched``, ``groups`` (clothing
      type -> count), ``seconds``, ``out``, and ``stages``: wall seconds of this call's
      stages (``clothing``, ``descriptors``, ``prefilter``, ``exact``, ``merge``), their CPU
      seconds (``*_cpu``; ``exact_cpu``, both exact stages, summed over the worker
      processes), ``coarse_pairs`` and ``pairs_evaluated`` (exact costs computed at reduced
      and at full resolution) and, with workers, ``worker_peak_rss_mb``.
    """
    t0 = time.time()
    stages: dict = {}
    names = list(names)
    n = len(names)
    kp = np.asarray(keypoints, _F).reshape(n, 18, 2)
    if maps.shape[0] != n:
        raise ValueError(f"{maps.shape[0]} maps for {n} names")
    if len(set(names)) != n:
        raise ValueError("image names must be unique")
    work_dir = work_dir or os.fspath(out) + ".work"
    os.makedirs(work_dir, exist_ok=True)
    tc, pc = time.time(), time.process_time()
    ids = None if identities is None else list(identities)
    if ids is not None and len(ids) != n:
        raise ValueError(f"{len(ids)} identities for {n} maps")
    if clothing is not None:
        types = list(clothing)
    else:
        types = clothing_types(maps, kp, progress)
        if ids is not None and settings.clothing_vote:
            types = vote_clothing(types, ids)
    stages["clothing"], stages["clothing_cpu"] = time.time() - tc, time.process_time() - pc
    if len(types) != n:
        raise ValueError(f"{len(types)} clothing types for {n} maps")
    fp = _fingerprint(names, maps, kp, types, ids, settings)
    meta_path = os.path.join(work_dir, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            old = json.load(f).get("fingerprint")
        if old != fp:
            raise ValueError(
                f"{work_dir} holds a search of other inputs or settings; delete it or write to another output"
            )
    else:
        with open(meta_path + ".tmp", "w") as f:
            json.dump({"fingerprint": fp, "settings": dataclasses.asdict(settings), "n": n}, f)
        os.replace(meta_path + ".tmp", meta_path)

    cand_path = os.path.join(work_dir, "candidates.npy")
    if os.path.exists(cand_path):
        cand = np.load(cand_path)
    else:
        groups = _group_ids(types)
        id_arr = _group_ids(ids) if ids is not None else None
        tc, pc = time.time(), time.process_time()
        desc = build_descriptors(maps, kp, settings, progress=progress)
        stages["descriptors"] = time.time() - tc
        stages["descriptors_cpu"] = time.process_time() - pc
        tc, pc = time.time(), time.process_time()
        cand, _ = prefilter(
            desc, kp, groups, id_arr, settings, progress, candidates_per_source(maps.shape[1], settings)
        )
        stages["prefilter"], stages["prefilter_cpu"] = time.time() - tc, time.process_time() - pc
        del desc
        np.save(cand_path + ".tmp.npy", cand)
        os.replace(cand_path + ".tmp.npy", cand_path)

    n_chunks = -(-n // chunk_size)
    chunk_path = [os.path.join(work_dir, f"chunk-{c:05d}.csv") for c in range(n_chunks)]
    pending = [c for c in range(n_chunks) if not os.path.exists(chunk_path[c])]
    if stop_after_chunks is not None:
        pending = pending[:stop_after_chunks]

    def tasks():
        for c in pending:
            src = np.arange(c * chunk_size, min((c + 1) * chunk_size, n))
            yield c, src, cand[src], _chunk_transforms(kp, src, cand[src])

    bar = None
    if progress:
        from tqdm import tqdm

        done = sum(min((c + 1) * chunk_size, n) - c * chunk_size for c in range(n_chunks) if c not in pending)
        bar = tqdm(total=n, initial=done, desc="exact re-rank", unit="map")

    def write(c, rows):
        _write_rows(chunk_path[c], [(names[s], names[t], cost) for s, t, cost in rows])

    factor = coarse_factor(maps.shape[1], settings.coarse_size)
    coarse_path = os.path.join(work_dir, "coarse.npy")
    coarse = None
    if pending and factor > 1:
        tc = time.time()
        if os.path.exists(coarse_path):
            coarse = np.load(coarse_path, mmap_mode="r")
        else:
            coarse = mode_pool(maps, factor)
            np.save(coarse_path + ".tmp.npy", coarse)
            os.replace(coarse_path + ".tmp.npy", coarse_path)
        stages["coarse_maps"] = time.time() - tc

    tc = time.time()
    stages["exact_cpu"] = 0.0
    n_valid = np.concatenate(
        [(cand[c * chunk_size : (c + 1) * chunk_size] >= 0).sum(1) for c in pending] or [np.zeros(0, np.int64)]
    )
    coarse_on = coarse_factor(maps.shape[1], settings.coarse_size) > 1
    stages["coarse_pairs"] = int(n_valid.sum()) if coarse_on else 0
    stages["pairs_evaluated"] = int(np.minimum(n_valid, settings.top_k).sum()) if coarse_on else int(n_valid.sum())
    if pending:
        if workers <= 1:
            for c, src, cs, tr in tasks():
                p0 = time.process_time()
                write(c, rerank(maps, kp, src, cs, tr, settings, coarse))
                stages["exact_cpu"] += time.process_time() - p0
                if bar is not None:
                    bar.update(len(src))
        else:
            import multiprocessing

            maps_path = os.path.join(work_dir, "maps.npy")
            if not isinstance(maps, np.memmap) or os.path.abspath(
                getattr(maps, "filename", "") or ""
            ) != os.path.abspath(maps_path):
                if not os.path.exists(maps_path):
                    np.save(maps_path + ".tmp.npy", np.asarray(maps))
                    os.replace(maps_path + ".tmp.npy", maps_path)
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(
                workers,
                _worker_init,
                (maps_path, coarse_path if coarse is not None else None, kp, dataclasses.asdict(settings)),
            ) as pool:
                for c, count, rows, cpu, rss in pool.imap_unordered(_worker_chunk, tasks()):
                    write(c, rows)
                    stages["exact_cpu"] += cpu
                    if rss is not None:
                        stages["worker_peak_rss_mb"] = max(stages.get("worker_peak_rss_mb", 0), rss)
                    if bar is not None:
                        bar.update(count)
    stages["exact"] = time.time() - tc
    if bar is not None:
        bar.close()
    summary = {
        "complete": False,
        "sources": n,
        "out": os.fspath(out),
        "stages": stages,
        "groups": {str(t): k for t, k in sorted(_count(types).items(), key=lambda kv: -kv[1])},
    }
    if not all(os.path.exists(p) for p in chunk_path):
        summary["seconds"] = time.time() - t0
        return summary
    tc = time.time()
    rows = []
    for p in chunk_path:
        rows += read_pseudo_pairs(p)
    _write_rows(os.fspath(out), rows)
    stages["merge"] = time.time() - tc
    _warn_unmatched(n - len(rows))
    if not keep_work:
        for p in chunk_path + [cand_path, meta_path, coarse_path, os.path.join(work_dir, "maps.npy")]:
            if os.path.exists(p):
                os.remove(p)
        if not os.listdir(work_dir):
            os.rmdir(work_dir)
    summary.update(complete=True, pairs=len(rows), unmatched=n - len(rows), seconds=time.time() - t0)
    return summary
