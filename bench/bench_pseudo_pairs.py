"""Pseudo-label search (SPT Eq. 1): time and memory against N, quality, DeepFashion estimate.

Measures, on synthetic people (``spt_tf.data.synthetic``, generated once under ``--data``
and reused):

* **Scale**: ``pseudo_pairs.run_search`` end to end (clothing types, descriptors,
  pre-filter, exact re-ranking with ``--workers`` processes, merge) on the first N of 5,000
  maps at 128x64, each N in a fresh process so that its peak memory (RSS of the process and
  of its workers) is its own; per-stage wall times; the growth law fitted to them.
* **256x256**: the same on 600 maps at 256x256, for the per-map and per-pair costs at
  DeepFashion's resolution; with the fitted pre-filter term, the time of a DeepFashion-sized
  search (37,258 maps) is extrapolated.
* **Quality** on ``--quality_n`` maps: the clothing classifier's accuracy against
  ``identities.csv`` (from each map alone, and voted per identity); the fraction of chosen
  targets whose true clothing type (identities.csv) equals the source's, both ways; the
  pre-filter's top-K recall of the exact-cost best of all admissible candidates (brute
  force), for K = 1 .. 64.

Usage::

  .venv/bin/python bench/bench_pseudo_pairs.py [--sizes 500,1000,2000,5000] [--workers 2]
      [--quality_n 1000] [--data /tmp/spt_bench_pseudo] [--json results.json]
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spt_tf.data import pseudo_pairs as pp  # noqa: E402
from spt_tf.data import synthetic  # noqa: E402

DEEPFASHION_N = 37258
SETS = {
    # name: (identities, poses per identity, height, width, seed) -> train maps
    "syn128": (1250, 5, 128, 64, 7),  # 5,000 train maps
    "syn256": (150, 5, 256, 256, 11),  # 600 train maps
}


def ensure_set(root: str, name: str, workers: int) -> str:
    out = os.path.join(root, name)
    ids, poses, h, w, seed = SETS[name]
    if not os.path.exists(os.path.join(out, "identities.csv")):
        print(f"generating {name} into {out} ...", flush=True)
        synthetic.generate(out, ids, poses, h, w, seed, test_fraction=0.2, workers=workers)
    return out


def load(data_dir: str, n: int | None = None):
    names, maps, kp = pp.load_dataset(
        os.path.join(data_dir, "annotation-train.csv"), os.path.join(data_dir, "parsing"), progress=False
    )
    with open(os.path.join(data_dir, "identities.csv")) as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    if n is not None:
        if n > len(names):
            raise SystemExit(f"{data_dir} has {len(names)} training maps, fewer than {n}")
        names, maps, kp = names[:n], maps[:n], kp[:n]
    truth = [(rows[x]["upper"], rows[x]["lower"]) for x in names]
    ident = [rows[x]["identity"] for x in names]
    return names, maps, kp, truth, ident


def settings_for(top_k: int, prefilter_k: int) -> pp.SearchSettings:
    return pp.SearchSettings(top_k=top_k, prefilter_k=prefilter_k)


def one_run(data_dir: str, n: int, workers: int, top_k: int, prefilter_k: int) -> dict:
    """One search in this (fresh) process; the numbers of one row of the scale table."""
    t0 = time.time()
    names, maps, kp, truth, ident = load(data_dir, n)
    t_load = time.time() - t0
    # TensorFlow's import and the first trace of the transforms are a fixed cost; timed apart.
    t0 = time.time()
    pp.transforms_for(kp[:2], kp[:2])
    t_tf = time.time() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "pseudo-pairs.csv")
        s = pp.run_search(
            names, maps, kp, out, settings_for(top_k, prefilter_k), identities=ident, workers=workers, progress=False
        )
        rows = pp.read_pseudo_pairs(out)
    index = {x: i for i, x in enumerate(names)}
    same = [truth[index[a]] == truth[index[b]] for a, b, _ in rows]
    # VmHWM, not getrusage: ru_maxrss survives exec, so a spawned process would report its
    # parent's size at fork time.
    self_rss = pp.peak_rss_mb()
    kids_rss = s["stages"].get("worker_peak_rss_mb", 0.0)
    return {
        "n": n,
        "height": int(maps.shape[1]),
        "width": int(maps.shape[2]),
        "workers": workers,
        "top_k": top_k,
        "prefilter_k": prefilter_k,
        "load_s": t_load,
        "tf_init_s": t_tf,
        "search_s": s["seconds"],
        "stages": s["stages"],
        "pairs": s["pairs"],
        "unmatched": s["unmatched"],
        "same_type_fraction": float(np.mean(same)) if same else float("nan"),
        "peak_rss_mb": self_rss,
        "peak_worker_rss_mb": kids_rss,
        "descriptor_dim": int(
            pp.build_descriptors(maps[:400], kp[:400], pp.SearchSettings(), reference=pp.reference_pose(kp)).u.shape[1]
        ),
        "groups": s["groups"],
    }


def subprocess_run(data_dir: str, n: int, workers: int, top_k: int, prefilter_k: int) -> dict:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--one",
        str(n),
        "--one_data",
        data_dir,
        "--workers",
        str(workers),
        "--top_k",
        str(top_k),
        "--prefilter_k",
        str(prefilter_k),
    ]
    # One BLAS thread: on a shared machine OpenBLAS's spinning threads inflate both wall and
    # CPU time many times over; the exact stage's processes do no BLAS work anyway.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"run N={n} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def quality(data_dir: str, n: int, top_k: int, prefilter_k: int, max_k: int = 64) -> dict:
    """Classifier accuracy, chosen-pair clothing agreement, and the pre-filter's recall."""
    names, maps, kp, truth, ident = load(data_dir, n)
    t0 = time.time()
    raw = pp.clothing_types(maps, kp)
    t_cloth = time.time() - t0
    voted = pp.vote_clothing(raw, ident)

    def accuracy(types):
        return {
            "sleeve": float(np.mean([a[0] == b[0] for a, b in zip(types, truth)])),
            "lower": float(np.mean([a[1] == b[1] for a, b in zip(types, truth)])),
            "both": float(np.mean([a == b for a, b in zip(types, truth)])),
        }

    # Chosen targets: identities excluded in both; clothing from the maps alone, or voted.
    agree = {}
    index = {x: i for i, x in enumerate(names)}
    for mode, types in (("maps_only", raw), ("identity_vote", voted)):
        rows = pp.search(
            dict(zip(names, maps)),
            dict(zip(names, kp)),
            clothing=dict(zip(names, types)),
            identities=dict(zip(names, ident)),
            settings=settings_for(top_k, prefilter_k),
        )
        agree[mode] = float(np.mean([truth[index[a]] == truth[index[b]] for a, b, _ in rows]))
    settings = settings_for(top_k, prefilter_k)
    groups = pp._group_ids(voted)
    ids = pp._group_ids(ident)
    desc = pp.build_descriptors(maps, kp, settings)
    cand, _ = pp.prefilter(desc, kp, groups, ids, settings, k=max_k)
    # The coarse stage's order of the pre-filter's first prefilter_k candidates.
    factor = pp.coarse_factor(maps.shape[1], settings.coarse_size)
    first = cand[:, :prefilter_k]
    src_all = np.arange(n)
    coarse_order = first.copy()
    if factor > 1:
        small = pp.mode_pool(maps, factor)
        small_kp = np.where(kp >= 0, kp / factor, -1).astype(np.float32)
        for s0 in range(0, n, 128):
            src = src_all[s0 : s0 + 128]
            tr = pp._chunk_transforms(small_kp, src, first[src])
            table = pp._table_costs(small, small_kp, src, first[src], tr, settings)
            order = np.argsort(table, axis=1, kind="stable")
            coarse_order[src] = np.take_along_axis(first[src], order, 1)
    # Brute force: every admissible candidate of every source, exact cost, in batches.
    z, v = pp.normalized_poses(kp)
    t0 = time.time()
    best = np.full(n, -1)
    evaluated = 0
    for s0 in range(0, n, 32):
        src = np.arange(s0, min(s0 + 32, n))
        ps, pc = [], []
        for s in src:
            mem = np.nonzero(groups == groups[s])[0]
            ok = (
                (pp.pose_distances(z[s : s + 1], v[s : s + 1], z[mem], v[mem])[0] >= settings.min_pose_distance)
                & (mem != s)
                & (ids[mem] != ids[s])
            )
            ps += [s] * int(ok.sum())
            pc += list(mem[ok])
        ps, pc = np.array(ps, np.int64), np.array(pc, np.int64)
        if not len(ps):
            continue
        costs = pp.eq1_costs_pairs(maps, kp, maps, kp, ps, pc)
        evaluated += len(ps)
        for s in src:
            sel = np.nonzero(ps == s)[0]
            if len(sel):
                best[s] = pc[sel[np.argmin(costs[sel])]]
    t_brute = time.time() - t0
    has = best >= 0
    recall = {
        k: float(np.mean([best[s] in cand[s, :k] for s in np.nonzero(has)[0]]))
        for k in (1, 2, 4, 8, 16, 32, 64)
        if k <= max_k
    }
    # Pipeline: the exact best is found iff it survives both stages (pre-filter_k, then the
    # coarse stage's top_k).
    pipeline = {
        k: float(np.mean([best[s] in coarse_order[s, :k] for s in np.nonzero(has)[0]]))
        for k in (1, 2, 4, 8, 16)
        if k <= prefilter_k
    }
    return {
        "n": n,
        "sources_with_candidates": int(has.sum()),
        "accuracy_maps_only": accuracy(raw),
        "accuracy_identity_vote": accuracy(voted),
        "same_type": agree,
        "clothing_s": t_cloth,
        "recall": recall,
        "pipeline_recall": pipeline,
        "coarse_factor": factor,
        "brute_force_pairs": evaluated,
        "brute_force_s": t_brute,
    }


def prefilter_entry_cost(data_dir: str, n: int, k: int) -> dict:
    """Pre-filter CPU seconds per (source, candidate) entry: all n maps in one group."""
    names, maps, kp, truth, ident = load(data_dir, n)
    settings = pp.SearchSettings()
    desc = pp.build_descriptors(maps, kp, settings)
    pp.prefilter(desc, kp[:600], np.zeros(600, np.int64), None, settings, k=k)  # warm BLAS
    t0, c0 = time.time(), time.process_time()
    pp.prefilter(desc, kp, np.zeros(n, np.int64), None, settings, k=k)
    wall, cpu = time.time() - t0, time.process_time() - c0
    return {
        "n": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "dim": int(desc.u.shape[1]),
        "ns_per_entry_wall": wall / n**2 * 1e9,
        "ns_per_entry_cpu": cpu / n**2 * 1e9,
    }


def fit(ns, ts, powers):
    """Least squares ts ~ sum_p c_p n^p over the given powers; returns {p: c_p}."""
    a = np.stack([np.asarray(ns, float) ** p for p in powers], 1)
    c, *_ = np.linalg.lstsq(a, np.asarray(ts, float), rcond=None)
    return dict(zip(powers, c))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="500,1000,2000,5000")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--top_k", type=int, default=pp.SearchSettings.top_k)
    p.add_argument("--prefilter_k", type=int, default=pp.SearchSettings.prefilter_k)
    p.add_argument("--quality_n", type=int, default=1000)
    p.add_argument("--data", default="/tmp/spt_bench_pseudo")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--one_data", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(one_run(a.one_data, a.one, a.workers, a.top_k, a.prefilter_k)))
        return None

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, numpy {np.__version__}",
        flush=True,
    )
    t_all = time.time()
    d128 = ensure_set(a.data, "syn128", a.workers)
    d256 = ensure_set(a.data, "syn256", a.workers)
    sizes = [int(x) for x in a.sizes.split(",")]
    scale = []
    for n in sizes:
        r = subprocess_run(d128, n, a.workers, a.top_k, a.prefilter_k)
        scale.append(r)
        st = r["stages"]
        print(
            f"N={n:5d} 128x64: search {r['search_s']:7.1f} s, TF init {r['tf_init_s']:.1f} s "
            f"apart (clothing {st['clothing']:.1f}, "
            f"descriptors {st['descriptors']:.1f}, pre-filter {st['prefilter']:.1f}, exact "
            f"{st['exact']:.1f} [cpu {st['exact_cpu']:.1f} for {st['coarse_pairs']} coarse + "
            f"{st['pairs_evaluated']} full pairs], merge {st['merge']:.2f}); load "
            f"{r['load_s']:.1f} s; peak RSS {r['peak_rss_mb']:.0f} MB + workers "
            f"{r['peak_worker_rss_mb']:.0f} MB; same clothing "
            f"{r['same_type_fraction']:.3f}; unmatched {r['unmatched']}",
            flush=True,
        )
    r256 = subprocess_run(d256, 600, a.workers, a.top_k, a.prefilter_k)
    st = r256["stages"]
    print(
        f"N=  600 256x256: search {r256['search_s']:.1f} s (clothing {st['clothing']:.1f}, "
        f"descriptors {st['descriptors']:.1f}, pre-filter {st['prefilter']:.1f}, exact "
        f"{st['exact']:.1f} [cpu {st['exact_cpu']:.1f} for {st['coarse_pairs']} coarse + "
        f"{st['pairs_evaluated']} full pairs]); "
        f"load {r256['load_s']:.1f} s; same clothing {r256['same_type_fraction']:.3f}",
        flush=True,
    )
    q = quality(d128, a.quality_n, a.top_k, a.prefilter_k)
    print(
        f"quality N={q['n']}: clothing accuracy (maps only) {q['accuracy_maps_only']}, "
        f"(identity vote) {q['accuracy_identity_vote']}; chosen targets of the source's true "
        f"clothing type: {q['same_type']}; recall of the exact best in the pre-filter's top "
        f"K: {q['recall']}; after the coarse stage (x1/{q['coarse_factor']}) of the first "
        f"{a.prefilter_k}: {q['pipeline_recall']} ({q['brute_force_pairs']} brute-force pairs "
        f"in {q['brute_force_s']:.0f} s)",
        flush=True,
    )
    pe = prefilter_entry_cost(d128, sizes[-1], a.prefilter_k)
    print(
        f"pre-filter, {pe['n']} maps in one clothing group: {pe['wall_s']:.1f} s wall, "
        f"{pe['cpu_s']:.1f} s CPU ({pe['ns_per_entry_cpu']:.2f} ns CPU per source-candidate "
        f"entry, D = {pe['dim']})",
        flush=True,
    )

    # Growth laws from the 128x64 runs: wall as measured, and "dedicated" time (CPU seconds of
    # each stage; the exact stage's divided by the workers), which the machine's other load
    # does not inflate.
    def dedicated(r):
        st = r["stages"]
        return (
            st["clothing_cpu"]
            + st["descriptors_cpu"]
            + st["prefilter_cpu"]
            + st["exact_cpu"] / r["workers"]
            + st["merge"]
        )

    ns = [r["n"] for r in scale]
    total = [r["search_s"] for r in scale]
    ded = [dedicated(r) for r in scale]
    pre = [r["stages"]["prefilter_cpu"] for r in scale]
    law = fit(ns, total, (0, 1, 2))
    ded_law = fit(ns, ded, (0, 1, 2))
    pre_law = fit(ns, pre, (1, 2))
    slope = np.polyfit(np.log(ns), np.log(ded), 1)[0] if len(ns) > 1 else float("nan")
    print(
        f"growth at 128x64: wall = {law[0]:.2f} s + {law[1] * 1e3:.3f} ms * N + "
        f"{law[2] * 1e9:.3f} ns * N^2; dedicated = {ded_law[0]:.2f} s + "
        f"{ded_law[1] * 1e3:.3f} ms * N + {ded_law[2] * 1e9:.3f} ns * N^2 (log-log slope "
        f"{slope:.2f}); pre-filter CPU = {pre_law[1] * 1e3:.3f} ms * N + "
        f"{pre_law[2] * 1e9:.3f} ns * N^2",
        flush=True,
    )

    # DeepFashion estimate: per-map CPU costs at 256x256 (exact: both stages, per source);
    # the pre-filter's N^2 term from the one-group measurement, scaled by the descriptor
    # length, for the synthetic group balance and for one single group (worst case).
    n256 = r256["n"]
    st = r256["stages"]
    dim_ratio = r256["descriptor_dim"] / pe["dim"]
    groups = np.array(list(scale[-1]["groups"].values()), float)
    balance = float(((groups / groups.sum()) ** 2).sum())
    entry = pe["ns_per_entry_cpu"] * 1e-9 * dim_ratio
    est = {
        "load": r256["load_s"] / n256 * DEEPFASHION_N,
        "tf_init": r256["tf_init_s"],
        "clothing": st["clothing_cpu"] / n256 * DEEPFASHION_N,
        "descriptors": st["descriptors_cpu"] / n256 * DEEPFASHION_N,
        "prefilter": entry * balance * DEEPFASHION_N**2,
        "exact": st["exact_cpu"] / n256 * DEEPFASHION_N / a.workers,
    }
    est["total"] = sum(est.values())
    worst = est["total"] - est["prefilter"] + entry * DEEPFASHION_N**2
    print(
        f"DeepFashion-sized estimate (N={DEEPFASHION_N}, 256x256, top_k={a.top_k}, "
        f"prefilter_k={a.prefilter_k}, {a.workers} workers, dedicated cores): "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in est.items())
        + f" (clothing groups as the synthetic set: sum of squared shares {balance:.3f}; all "
        f"in one group: total {worst / 60:.1f} min); exact stages "
        f"{st['exact_cpu'] / n256 * 1e3:.1f} ms CPU per map ({st['coarse_pairs'] / n256:.1f} "
        f"coarse + {st['pairs_evaluated'] / n256:.1f} full-resolution pairs)",
        flush=True,
    )
    est["one_group_total"] = worst
    # Memory: the parent's peak does not grow with N beyond the descriptors (2 N D float32),
    # the candidates (N prefilter_k int64) and a pre-filter block; the maps are a memory map
    # (file-backed pages); each worker holds one group of sources and their candidates.
    grow = DEEPFASHION_N * (2 * r256["descriptor_dim"] * 4 + a.prefilter_k * 8)
    block = pp.SearchSettings.block * DEEPFASHION_N * 4 * 6
    mem = {
        "parent_mb": r256["peak_rss_mb"] + (grow + block) / 2**20,
        "workers_mb": a.workers * r256["peak_worker_rss_mb"],
        "maps_file_mb": DEEPFASHION_N * 256 * 256 / 2**20,
    }
    print(
        f"DeepFashion-sized memory estimate: parent {mem['parent_mb']:.0f} MB (measured "
        f"{r256['peak_rss_mb']:.0f} MB at 600 maps + descriptors, candidates and one "
        f"one-group pre-filter block), workers {a.workers} x {r256['peak_worker_rss_mb']:.0f} "
        f"MB, maps memory-mapped from a {mem['maps_file_mb']:.0f} MB file (page cache)",
        flush=True,
    )
    est["memory"] = mem
    print(f"bench wall time {time.time() - t_all:.0f} s", flush=True)
    results = {
        "scale": scale,
        "r256": r256,
        "quality": q,
        "prefilter_entry": pe,
        "wall_law": law,
        "dedicated_law": ded_law,
        "prefilter_law": pre_law,
        "deepfashion_estimate_s": est,
    }
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return results


if __name__ == "__main__":
    main()
