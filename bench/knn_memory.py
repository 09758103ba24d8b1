"""Nearest-neighbour search for episodic memories: exact (faiss's brute-force kernel,
torch) against approximate (the runtime's IVF index, faiss's HNSW), by store size.

    python bench/knn_memory.py [--sizes 10000 100000 1000000] [--ks 11 50]

Keys are 64-dimensional and clustered (a mixture of 1,000 Gaussians, as embeddings and
projected observations are); queries lie near stored keys. One thread, as runs use.
For each size and k: lookups/s for one query (acting) and for batches of 32 (a training
minibatch), build time, the resident memory the structure adds (RSS before and after
building it, on top of the keys themselves), and the approximate methods' recall@k
against the exact neighbours. The runtime switches from exact to IVF at
knn.APPROXIMATE_FROM keys; this bench is where that size comes from.
"""

from __future__ import annotations

import argparse
import os
import time

import faiss
import numpy as np
import torch

from metadsl.runtime.memory import knn

DIM = 64


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return kb / 1024


def clustered(n: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(1000, DIM)).astype(np.float32) * 3
    return centres[rng.integers(0, 1000, n)] + rng.normal(size=(n, DIM)).astype(np.float32)


def rate(search, queries: np.ndarray, batch: int, seconds: float = 1.5) -> float:
    """Queries answered per second, in batches of `batch`."""
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        search(queries[i:i + batch])
        done, i = done + batch, (i + batch) % (len(queries) - batch)
    return done / (time.perf_counter() - start)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--ks", type=int, nargs="+", default=[11, 50])
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print("| keys | k | method | 1 query/s | 32-query batches: queries/s | build s | "
          "added MB | recall@k |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        keys = clustered(n, rng)
        queries = keys[rng.integers(0, n, 2048)] + \
            0.3 * rng.normal(size=(2048, DIM)).astype(np.float32)
        tkeys, tqueries = torch.from_numpy(keys), torch.from_numpy(queries)
        for k in args.ks:
            exact = faiss.knn(queries[:256], keys, k)[1]
            rows = []
            for name, backend in (("faiss flat (exact)", "faiss"), ("torch (exact)", "torch")):
                def exact_search(q, backend=backend):
                    knn.search(tkeys, torch.from_numpy(q), k, backend)
                rows.append((name, exact_search, 0.0, 0.0, 1.0))
            before, start = rss_mb(), time.perf_counter()
            ivf = knn.Neighbours(approximate_from=0)
            found = ivf.search(tkeys, tqueries[:256], k)[1].numpy()
            build, added = time.perf_counter() - start, rss_mb() - before
            rows.append(("IVF-Flat + re-rank (runtime)",
                         lambda q: ivf.search(tkeys, torch.from_numpy(q), k), build, added,
                         recall(found, exact)))
            before, start = rss_mb(), time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(DIM, 32)
            hnsw.hnsw.efSearch = max(64, 2 * k)
            hnsw.add(keys)
            build, added = time.perf_counter() - start, rss_mb() - before
            found = hnsw.search(queries[:256], k)[1]
            rows.append(("faiss HNSW (M 32)", lambda q: hnsw.search(q, k), build, added,
                         recall(found, exact)))
            for name, fn, build, added, r in rows:
                print(f"| {n:,} | {k} | {name} | {rate(fn, queries, 1):,.0f} | "
                      f"{rate(fn, queries, 32):,.0f} | {build:.1f} | {added:,.0f} | {r:.3f} |",
                      flush=True)
            del ivf, hnsw


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
