"""A generation's members as Ray tasks: `schedule { backend = ray }` (imported only then).

The driver keeps all learning state (θ, the optimizer's moments, the generation count),
so checkpoints and `--resume` are the local run's. Per generation it puts the member
body, the state, the generation (θ and the noise keys) and the task instances in the
object store once; a
task gets their references and a member index, regenerates its ε from the key, runs the
same body function `population.sequential` runs, and returns scalars. Results are
gathered in submission order, so the numbers are the sequential run's bit for bit.

Ray retries a task whose worker died (`max_retries`); of the errors a member raises,
only an environment's (`TaskError`) is retried — a non-finite loss is not.
"""

from __future__ import annotations

import json
import os
import socket
import sys

import torch

from ..errors import SettingError, TaskError
from .population import gather, member

RETRIES = 3  # per task, for a worker that died or an environment that failed
_remote = None  # the member task, made when Ray is first reached


def _member(body, state, generation, instances, rows: int, path: tuple, i: int):
    torch.set_num_threads(1)
    return member(body, generation, state, instances, rows, path, i)


def members(body, generation, state, instances, rows: int, path: tuple,
            run) -> tuple[dict, int]:
    """Every member as a Ray task, at most the run's `workers` in flight; results in member
    order."""
    workers = run.workers
    ray = _connect(run, run.address, workers, body)
    shared = [ray.put(body), ray.put(state), ray.put(generation), ray.put(instances)]
    refs, in_flight = [], []
    for i in range(generation.population):
        if len(in_flight) >= workers:
            _, in_flight = ray.wait(in_flight, num_returns=1)
        refs.append(_remote.remote(*shared, rows, path, i))
        in_flight.append(refs[-1])
    return gather(ray.get(refs))


def _connect(run, address: str, workers: int, body):
    """Start or join Ray once per process: the schedule's address, else RAY_ADDRESS, else
    a new local instance of `workers` CPUs (a bare `ray.init()` may join a stale cluster
    left on the machine). The address and the cluster's resources go in the run folder."""
    global _remote
    try:
        import ray
    except ImportError:
        raise SettingError("schedule { backend = ray } needs Ray: pip install "
                           "'metadsl[ray]'") from None
    if _remote is not None and ray.is_initialized():
        return ray
    target = address or os.environ.get("RAY_ADDRESS") or "local"
    options = dict(address=target, include_dashboard=False, log_to_driver=False,
                   configure_logging=False,
                   runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    if target == "local":
        options["num_cpus"] = workers
    else:
        _probe(target)
    try:
        ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SettingError(f"cannot reach a Ray cluster at {target!r}: {e}. Start one "
                           "(`ray start --head`), fix `address` in the schedule or "
                           "RAY_ADDRESS, or leave both unset for a local one") from None
    _remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=[TaskError])(_member)
    # the generated training module is not importable on workers: send it by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[body.func.__module__])
    resources = {k: v for k, v in ray.cluster_resources().items()
                 if not k.startswith("node:")}
    (run.folder / "ray.json").write_text(json.dumps(
        {"address": target, "workers": workers, "resources": resources}, indent=1) + "\n")
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Refuse an address whose head does not answer in `timeout` seconds: Ray itself would
    retry for minutes before giving up."""
    host, _, port = address.split("://")[-1].rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise SettingError(f"no Ray cluster answers at {address!r} ({e.strerror or e}). "
                           "Start one (`ray start --head`), fix `address` in the schedule "
                           "or RAY_ADDRESS, or leave both unset for a local one") from None
