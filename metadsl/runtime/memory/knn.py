"""k-nearest-neighbour search over an episodic memory's keys.

A memory keeps its keys in one fixed-capacity tensor per action and searches the used
prefix. Below `APPROXIMATE_FROM` keys the search is exact (squared L2): faiss's
brute-force kernel (`faiss.knn`, BLAS over the keys as they are, so nothing has to follow
the memory's writes, evictions and gradient steps) or, where faiss is not installed,
torch (`cdist` and `topk`); the two are tested equal. From that size on (bench/knn_memory.py
measured where the exact search falls behind) a faiss inverted-file index (IVF-Flat)
proposes candidates, which are re-ranked by their exact distances to the current keys.
The index follows the memory: slots written since the last search are removed and added
again, the slots a trained memory's lookups read (the keys its next gradient step moves)
likewise, and it is retrained when the store has doubled since it was built. Neighbours
come back nearest first; a store of fewer than k keys gives all of them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

try:  # faiss-cpu is a dependency; the torch path keeps a broken install usable
    import faiss
except ImportError:  # pragma: no cover - exercised by the tests through BACKENDS
    faiss = None


def _search_faiss(keys: torch.Tensor, queries: torch.Tensor, k: int):
    distances, ids = faiss.knn(queries.detach().contiguous().numpy(),
                               keys.detach().contiguous().numpy(), k)
    return torch.from_numpy(distances), torch.from_numpy(ids)


def _search_torch(keys: torch.Tensor, queries: torch.Tensor, k: int):
    with torch.no_grad():
        d2 = torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist") ** 2
        distances, ids = d2.topk(k, dim=-1, largest=False)
    return distances, ids


BACKENDS = {"faiss": _search_faiss, "torch": _search_torch}
DEFAULT = "faiss" if faiss is not None else "torch"
# Keys from which a store searches approximately (bench/knn_memory.py; README).
APPROXIMATE_FROM = 100_000
# Lists probed per query, and candidates re-ranked per neighbour wanted.
PROBES, CANDIDATES = 16, 2


def search(keys: torch.Tensor, queries: torch.Tensor, k: int, backend: str = DEFAULT):
    """The min(k, len(keys)) nearest keys [N, K] of each query [N, dim] and their squared
    distances [N, K], nearest first, exactly; no gradient flows through the choice."""
    k = min(k, keys.shape[0])
    if k == 0 or queries.shape[0] == 0:
        empty = torch.zeros(queries.shape[0], k)
        return empty, empty.long()
    return BACKENDS[backend](keys.float(), queries.float(), k)


class Neighbours:
    """The search of one action's store: exact while it is small, an IVF index kept in
    step with the store's writes from `approximate_from` keys on (see the module doc).
    Not part of a checkpoint: a restored store rebuilds it at its first search."""

    def __init__(self, approximate_from: int = APPROXIMATE_FROM):
        self.approximate_from = approximate_from
        self.index = None
        self.built_size = 0
        self.stale: set[int] = set()  # slots whose key changed since the index saw it

    def changed(self, slots: torch.Tensor) -> None:
        if self.index is not None:
            self.stale.update(slots.reshape(-1).tolist())

    def search(self, keys: torch.Tensor, queries: torch.Tensor, k: int):
        size = keys.shape[0]
        if faiss is None or size < self.approximate_from or k == 0 or not queries.shape[0]:
            self.index = None
            return search(keys, queries, k)
        keys = keys.detach().float().contiguous()
        if self.index is None or size >= 2 * self.built_size:
            self._build(keys)
        elif self.stale:
            self._refresh(keys)
        wanted = min(size, CANDIDATES * k)
        _, candidates = self.index.search(queries.detach().float().contiguous().numpy(), wanted)
        candidates = torch.from_numpy(candidates)
        found = candidates >= 0  # an IVF search may come back short: -1 pads
        safe = candidates.clamp(min=0)
        d2 = ((keys[safe] - queries.detach().float().unsqueeze(1)) ** 2).sum(-1)
        d2 = torch.where(found, d2, torch.full_like(d2, math.inf))
        d2, order = d2.topk(min(k, size), dim=-1, largest=False)
        return d2, safe.gather(1, order)

    def _build(self, keys: torch.Tensor) -> None:
        size, dim = keys.shape
        lists = max(1, int(math.sqrt(size)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, lists)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # slots are removed by id
        sample = keys.numpy()[np.random.default_rng(0).permutation(size)[:40 * lists]]
        index.train(sample)
        index.add_with_ids(keys.numpy(), np.arange(size, dtype=np.int64))
        index.nprobe = PROBES
        self.index, self.built_size, self.stale = index, size, set()

    def _refresh(self, keys: torch.Tensor) -> None:
        slots = np.fromiter(self.stale, dtype=np.int64)
        slots = slots[slots < keys.shape[0]]
        self.index.remove_ids(slots)
        self.index.add_with_ids(keys.numpy()[slots], slots)
        self.stale = set()
