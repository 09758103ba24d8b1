"""Exact k-nearest-neighbour search over an episodic memory's keys.

A memory keeps its keys in one fixed-capacity tensor and searches the used prefix. The
search is exact (squared L2), by faiss's brute-force kernel (`faiss.knn`, BLAS over the
keys as they are, so no index has to follow the memory's writes, evictions and gradient
steps) or, where faiss is not installed, by torch (`cdist` and `topk`); the two are tested
equal. Neighbours come back sorted by distance, the first k of the store when it holds
fewer than k.
"""

from __future__ import annotations

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


def search(keys: torch.Tensor, queries: torch.Tensor, k: int, backend: str = DEFAULT):
    """The min(k, len(keys)) nearest keys [N, K] of each query [N, dim] and their squared
    distances [N, K], nearest first; no gradient flows through the choice."""
    k = min(k, keys.shape[0])
    if k == 0 or queries.shape[0] == 0:
        empty = torch.zeros(queries.shape[0], k)
        return empty, empty.long()
    return BACKENDS[backend](keys.float(), queries.float(), k)
