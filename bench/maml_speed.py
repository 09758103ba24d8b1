"""MAML speed: the compiled spec against a plain hand-written torch.func MAML, and the
inner step vmapped over tasks against a Python loop over tasks.

    python bench/maml_speed.py [--iterations 10]

Both trainers run second-order MAML on 2-D navigation at the same sizes (2×100 ReLU
Gaussian policy, meta-batch 20, 20 episodes of 100 steps per task before and after one
vanilla policy-gradient step with a linear feature baseline, Adam outer step through the
adaptation: bench/specs/maml_nav2d_adam.mrl). Targets (issue 4): compiled / hand-written
seconds per meta-iteration ≤ 1.05; vmap faster than the loop at meta-batch 20.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

ROOT = Path(__file__).resolve().parent.parent
TASKS, EPISODES, HORIZON, ALPHA, GAMMA = 20, 20, 100, 0.1, 0.99


# ---- a plain MAML, written by hand --------------------------------------------------------


class HandPolicy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(),
                                 nn.Linear(100, 2))
        self.log_std = nn.Parameter(torch.zeros(2))

    def forward(self, obs):
        return self.net(obs), self.log_std


def log_prob(mean, log_std, action):
    z = (action - mean) * torch.exp(-log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def hand_rollout(policy, params, goals, gen):
    """One episode per row; params per task [TASKS, ...]; rows task-major."""
    rows = TASKS * EPISODES
    goal = goals.repeat_interleave(EPISODES, 0)
    pos = torch.zeros(rows, 2)
    obs_l, act_l, rew_l, logp_l = [], [], [], []
    with torch.no_grad():
        for _ in range(HORIZON):
            mean, log_std = vmap(lambda p, o: functional_call(policy, p, (o,)))(
                params, pos.reshape(TASKS, EPISODES, 2))
            mean, log_std = mean.reshape(rows, 2), log_std.repeat_interleave(EPISODES, 0)
            action = mean + torch.exp(log_std) * torch.randn(rows, 2, generator=gen)
            obs_l.append(pos)
            pos = pos + action.clamp(-0.1, 0.1)
            act_l.append(action)
            rew_l.append(-torch.linalg.vector_norm(pos - goal, dim=-1))
            logp_l.append(log_prob(mean, log_std, action))
    split = lambda x: x.reshape(HORIZON, TASKS, EPISODES, *x.shape[2:]).movedim(1, 0)  # noqa
    return {k: split(torch.stack(v)) for k, v in
            (("obs", obs_l), ("action", act_l), ("reward", rew_l), ("logp", logp_l))}


def advantages(obs, reward, normalize):
    ret, acc = [], torch.zeros(reward.shape[1:])
    for t in reversed(range(HORIZON)):
        acc = reward[t] + GAMMA * acc
        ret.append(acc)
    ret = torch.stack(ret[::-1])
    t = (torch.arange(HORIZON, dtype=torch.float32) / HORIZON)[:, None, None].expand(
        HORIZON, EPISODES, 1)
    feats = torch.cat([obs, obs ** 2, t, t ** 2, t ** 3, torch.ones_like(t)], -1)
    flat = feats.reshape(-1, feats.shape[-1]).double()
    gram = flat.T @ flat
    gram = gram + (1e-5 + 1e-6 * torch.diagonal(gram).mean()) * torch.eye(flat.shape[-1],
                                                                           dtype=gram.dtype)
    w = torch.linalg.solve(gram, flat.T @ ret.reshape(-1, 1).double())
    adv = ret - (feats.double() @ w).squeeze(-1).float()
    return (adv - adv.mean()) / (adv.std() + 1e-8) if normalize else adv


def inner_loss(policy, params, data):
    mean, log_std = functional_call(policy, params, (data["obs"],))
    adv = advantages(data["obs"], data["reward"], normalize=True)
    return -(log_prob(mean, log_std, data["action"]) * adv).mean()


def outer_loss(policy, params, data):
    mean, log_std = functional_call(policy, params, (data["obs"],))
    adv = advantages(data["obs"], data["reward"], normalize=True)
    return -(torch.exp(log_prob(mean, log_std, data["action"]) - data["logp"]) * adv).mean()


def adapt(policy, theta, data, create_graph):
    grads = vmap(grad(lambda p, d: inner_loss(policy, p, d)))(theta, data)
    if not create_graph:
        grads = {k: g.detach() for k, g in grads.items()}
    return {k: theta[k] - ALPHA * grads[k] for k in theta}


def hand_iteration(policy, opt, gen):
    goals = torch.rand(TASKS, 2, generator=gen) - 0.5
    theta = {k: p.unsqueeze(0).expand(TASKS, *p.shape) for k, p in policy.named_parameters()}
    pre = hand_rollout(policy, theta, goals, gen)
    post = hand_rollout(policy, adapt(policy, theta, pre, create_graph=False), goals, gen)
    adapted = adapt(policy, theta, pre, create_graph=True)
    loss = vmap(lambda p, d: outer_loss(policy, p, d))(adapted, post).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def hand_seconds(iterations: int) -> float:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    policy = HandPolicy()
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    hand_iteration(policy, opt, gen)  # warm-up
    start = time.perf_counter()
    for _ in range(iterations):
        hand_iteration(policy, opt, gen)
    return (time.perf_counter() - start) / iterations


# ---- the compiled spec --------------------------------------------------------------------


def compiled_module():
    out = Path("/tmp/metadsl-bench-maml.py")
    subprocess.run([sys.executable, "-m", "metadsl.cli", "compile",
                    "bench/specs/maml_nav2d_adam.mrl", "-o", str(out)], cwd=ROOT, check=True)
    spec = importlib.util.spec_from_file_location("maml_bench", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Quiet:
    """What the outer loop needs of a run, without the run folder."""

    progress = 0.0

    def iterations(self, loop, total):
        return range(total)

    def log(self, *args, **kwargs):
        pass


def compiled_seconds(module, iterations: int) -> float:
    args = module.Args(meta__iterations=1)
    state = module.build(args)
    module.meta(args, state, _Quiet())  # warm-up
    args.meta__iterations = iterations
    start = time.perf_counter()
    module.meta(args, state, _Quiet())
    return (time.perf_counter() - start) / iterations


# ---- vmap against a loop over tasks ---------------------------------------------------------


def inner_step_seconds(module, vmapped: bool, repeats: int = 5) -> float:
    """One second-order inner step and the outer gradient through it, meta-batch 20."""
    from metadsl.runtime import adaptation

    args = module.Args()
    state = module.build(args)
    instances = state.nav.sample(TASKS, HORIZON, state.gen)
    env = state.nav.env(instances, copies=EPISODES)
    from metadsl.runtime import rollout

    tau = rollout.collect(state.pi, env, env.horizon, state.gen,
                          params=state.pi.parameters_per_task(TASKS))

    def loss_fn(batch, heads):
        return module.reinforce_linear(batch, heads)

    def once():
        if vmapped:
            adapted, _ = adaptation.sgd(state.pi, state.pi.parameters_per_task(TASKS), tau,
                                        loss_fn, lr=ALPHA, order=2)
            adaptation.objective(state.pi, adapted, tau, loss_fn).loss.backward()
            return
        split, shared = adaptation.split_tasks(tau, TASKS)
        total = 0.0
        for i in range(TASKS):  # the same computation, one task at a time
            one = dict({k: v[i] for k, v in split.items()}, **shared)
            theta = dict(state.pi.named_parameters())
            g = torch.autograd.grad(loss_fn(one, state.pi.apply(theta, one)),
                                    list(theta.values()), create_graph=True)
            adapted = {k: v - ALPHA * gi for (k, v), gi in zip(theta.items(), g)}
            total = total + loss_fn(one, state.pi.apply(adapted, one))
        (total / TASKS).backward()

    once()
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=10)
    n = parser.parse_args().iterations
    module = compiled_module()
    hand = hand_seconds(n)
    compiled = compiled_seconds(module, n)
    print(f"hand-written torch.func MAML: {hand:.3f} s per meta-iteration")
    print(f"compiled MAML:                {compiled:.3f} s per meta-iteration  "
          f"(ratio {compiled / hand:.3f}, target ≤ 1.05)")
    loop, vmapped = inner_step_seconds(module, False), inner_step_seconds(module, True)
    print(f"inner step + outer gradient, meta-batch {TASKS}: loop {loop:.3f} s, "
          f"vmap {vmapped:.3f} s  (vmap is {loop / vmapped:.2f}× faster)")


if __name__ == "__main__":
    main()
