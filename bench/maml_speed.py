"""MAML speed: the compiled spec against a plain hand-written torch.func MAML, and
per-task computations vmapped over the task batch against a Python loop over tasks.

    python bench/maml_speed.py [--iterations 30]

Both trainers run second-order MAML on 2-D navigation at the same sizes (2×100 ReLU
Gaussian policy, meta-batch 20, 20 episodes of 100 steps per task before and after one
vanilla policy-gradient step with a linear feature baseline, Adam outer step through the
adaptation: bench/specs/maml_nav2d_adam.mrl). Targets (issue 4): compiled / hand-written
seconds per meta-iteration ≤ 1.05; vmap faster than the loop at meta-batch 20, measured
for the inner step with the outer gradient through it (navigation, 2,000 steps per task;
sine regression, 10 points per task) and for a rollout of 20 adapted policies.
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

from metadsl.runtime.runs.session import QuietRun

ROOT = Path(__file__).resolve().parent.parent
TASKS, EPISODES, HORIZON, ALPHA, GAMMA = 20, 20, 100, 0.5, 0.99
ACTION_SCALE = 0.1  # the spec's nav2d(action_scale): rllab's normalize()


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
            pos = pos + (ACTION_SCALE * action).clamp(-0.1, 0.1)
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



def compiled_seconds(module, iterations: int) -> float:
    args = module.Args(meta__iterations=1)
    state = module.build(args)
    module.meta(args, state, QuietRun(show=False))  # warm-up
    args.meta__iterations = iterations
    start = time.perf_counter()
    module.meta(args, state, QuietRun(show=False))
    return (time.perf_counter() - start) / iterations


# ---- vmap against a loop over tasks ---------------------------------------------------------


def _timed(once, repeats: int = 5) -> float:
    once()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - start) / repeats


def inner_step_seconds(model, data: dict, loss_fn, vmapped: bool) -> float:
    """One second-order inner step per task and the outer gradient through it."""
    from metadsl.runtime.learning import adaptation

    def once():
        if vmapped:
            adapted, _ = adaptation.sgd(model, model.parameters_per_task(TASKS), data,
                                        loss_fn, lr=ALPHA, order=2)
            adaptation.objective(model, adapted, data, loss_fn).loss.backward()
            return
        split, shared = adaptation.split_tasks(data, TASKS)
        total = 0.0
        for i in range(TASKS):  # the same computation, one task at a time
            one = dict({k: v[i] for k, v in split.items()}, **shared)
            theta = dict(model.named_parameters())
            g = torch.autograd.grad(loss_fn(one, model.apply(theta, one)),
                                    list(theta.values()), create_graph=True)
            adapted = {k: v - ALPHA * gi for (k, v), gi in zip(theta.items(), g)}
            total = total + loss_fn(one, model.apply(adapted, one))
        (total / TASKS).backward()

    return _timed(once)


def rollout_seconds(module, vmapped: bool) -> float:
    """A rollout of 20 episodes per task, each task acting with its own adapted θ′."""
    from metadsl.runtime.execution import rollout

    args = module.Args()
    state = module.build(args)
    instances = state.nav.sample(TASKS, HORIZON, state.gen)
    params = {k: v + 0.01 * torch.randn(v.shape) for k, v in
              state.pi.parameters_per_task(TASKS).items()}

    class Looped:
        """The policy evaluated task by task (a loop over the rows of each task)."""

        def initial_state(self, batch):
            return None

        def step(self, fields, memory, params):
            parts = [state.pi.apply({k: v[i] for k, v in params.items()},
                                    {k: v[i * EPISODES:(i + 1) * EPISODES]
                                     for k, v in fields.items()})["pi"] for i in range(TASKS)]
            return {"pi": type(parts[0])(torch.cat([p.mean for p in parts]),
                                         torch.cat([p.log_std for p in parts]))}, memory

    policy = state.pi if vmapped else Looped()

    def once():
        env = state.nav.env(instances, copies=EPISODES)
        rollout.collect(policy, env, env.horizon, state.gen, params=params)

    return _timed(once, repeats=3)


def nav_data(module):
    from metadsl.runtime.execution import rollout

    args = module.Args()
    state = module.build(args)
    instances = state.nav.sample(TASKS, HORIZON, state.gen)
    env = state.nav.env(instances, copies=EPISODES)
    tau = rollout.collect(state.pi, env, env.horizon, state.gen,
                          params=state.pi.parameters_per_task(TASKS))
    return state.pi, tau, lambda batch, heads: module.reinforce_linear(batch, heads)


def sine_data():
    """MAML's sine regression (specs/maml_sine.mrl sizes), meta-batch 20, 10 points each."""
    from metadsl.runtime.execution import rollout
    from metadsl.runtime.learning import models, ops
    from metadsl.runtime.tasks import families as tasks

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    family = tasks.Sine()
    model = models.FeedForward("mlp", inputs=["x"], heads={"pred": "regression"},
                               obs_dim=1, n_actions=0, hidden=[40, 40], activation="relu")
    data = rollout.samples(family.env(family.sample(TASKS, 1, gen), copies=10), gen)
    return model, data, lambda batch, heads: ops.mean(batch, (heads["pred"] - batch["y"]) ** 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=30)
    n = parser.parse_args().iterations
    module = compiled_module()
    hand = hand_seconds(n)
    compiled = compiled_seconds(module, n)
    print(f"hand-written torch.func MAML: {hand:.3f} s per meta-iteration")
    print(f"compiled MAML:                {compiled:.3f} s per meta-iteration  "
          f"(ratio {compiled / hand:.3f}, target ≤ 1.05)")
    print(f"vmap over the task batch against a Python loop over tasks, meta-batch {TASKS}:")
    for what, (model, data, loss_fn) in (("navigation inner step + outer gradient",
                                          nav_data(module)),
                                         ("sine inner step + outer gradient", sine_data())):
        loop = inner_step_seconds(model, data, loss_fn, False)
        vmapped = inner_step_seconds(model, data, loss_fn, True)
        print(f"  {what}: loop {loop * 1e3:.1f} ms, vmap {vmapped * 1e3:.1f} ms "
              f"({loop / vmapped:.2f}×)")
    loop, vmapped = rollout_seconds(module, False), rollout_seconds(module, True)
    print(f"  navigation rollout of 20 adapted policies: loop {loop * 1e3:.0f} ms, "
          f"vmap {vmapped * 1e3:.0f} ms ({loop / vmapped:.2f}×)")


if __name__ == "__main__":
    main()
