"""SAC on Pendulum-v1: specs/sac_pendulum.mrl against a hand-written SAC in the style of
CleanRL's sac_continuous_action, at the same settings.

    python bench/sac_vs_handwritten.py [--seeds 1 2 3] [--iterations 100]

The hand-written one is a single file's worth of PyTorch: an actor (MLP 256-256 ReLU, a
mean and a log std squashed into [−5, 2], tanh onto the action box), twin critics
(MLP 256-256 of (s, a)) with Polyak-averaged targets, Adam 1e-3 for the critics and 3e-4
for the actor, α = 0.2, batch 256, γ 0.99, τ 0.005. It runs the spec's schedule: one
episode (200 steps) with the policy's own samples, then 200 gradient steps (critic, then
actor) once the buffer holds 1,000 transitions; the time limit is not a termination (the
target bootstraps through it). Both are scored on 10 fresh episodes of the final policy,
sampling as in training. Reported per seed: environment steps per second over the whole
run (collection, updates, evaluation excluded) and the final mean return; the issue's
targets are a mean return ≥ −250 and ours ÷ hand-written ≥ 0.9 in steps per second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, BATCH, GAMMA, TAU, ALPHA, Q_LR, PI_LR, WARMUP = 256, 256, 0.99, 0.005, 0.2, 1e-3, 3e-4, 1000


def mlp(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, n_out))


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, low, high):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim)
        self.register_buffer("scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor):
        mean, log_std = self.net(obs).chunk(2, -1)
        log_std = -5 + 0.5 * 7 * (torch.tanh(log_std) + 1)
        u = mean + log_std.exp() * torch.randn_like(mean)
        y = torch.tanh(u)
        log_prob = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
                    - torch.log(self.scale * (1 - y ** 2) + 1e-6)).sum(-1)
        return y * self.scale + self.bias, log_prob


def handwritten(seed: int, iterations: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    env = gym.make("Pendulum-v1")
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = Actor(obs_dim, act_dim, env.action_space.low, env.action_space.high)
    qf1, qf2 = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
    qf1_target, qf2_target = mlp(obs_dim + act_dim, 1), mlp(obs_dim + act_dim, 1)
    qf1_target.load_state_dict(qf1.state_dict()), qf2_target.load_state_dict(qf2.state_dict())
    q_opt = torch.optim.Adam([*qf1.parameters(), *qf2.parameters()], lr=Q_LR)
    pi_opt = torch.optim.Adam(actor.parameters(), lr=PI_LR)
    size = iterations * 200
    buf = {k: torch.zeros(size, d) for k, d in (("obs", obs_dim), ("next_obs", obs_dim),
                                                ("action", act_dim), ("reward", 1),
                                                ("terminated", 1))}
    n, steps = 0, 0
    start = time.perf_counter()
    for iteration in range(iterations):
        obs, _ = env.reset(seed=seed * 100000 + iteration)
        done = False
        while not done:
            with torch.no_grad():
                action, _ = actor(torch.as_tensor(obs, dtype=torch.float32))
            next_obs, reward, terminated, truncated, _ = env.step(action.numpy())
            for k, v in (("obs", obs), ("next_obs", next_obs), ("action", action.numpy()),
                         ("reward", [reward]), ("terminated", [float(terminated)])):
                buf[k][n] = torch.as_tensor(np.asarray(v, dtype=np.float32))
            n, steps, obs, done = n + 1, steps + 1, next_obs, terminated or truncated
        if n < WARMUP:
            continue
        for _ in range(200):
            idx = torch.randint(n, (BATCH,))
            b = {k: v[idx] for k, v in buf.items()}
            with torch.no_grad():
                next_action, next_logp = actor(b["next_obs"])
                x = torch.cat([b["next_obs"], next_action], -1)
                next_q = torch.min(qf1_target(x), qf2_target(x)).squeeze(-1) - ALPHA * next_logp
                y = b["reward"].squeeze(-1) + GAMMA * (1 - b["terminated"].squeeze(-1)) * next_q
            x = torch.cat([b["obs"], b["action"]], -1)
            q_loss = ((qf1(x).squeeze(-1) - y) ** 2).mean() + ((qf2(x).squeeze(-1) - y) ** 2).mean()
            q_opt.zero_grad()
            q_loss.backward()
            q_opt.step()
            action, logp = actor(b["obs"])
            x = torch.cat([b["obs"], action], -1)
            pi_loss = (ALPHA * logp - torch.min(qf1(x), qf2(x)).squeeze(-1)).mean()
            pi_opt.zero_grad()
            pi_loss.backward()
            pi_opt.step()
            with torch.no_grad():
                for net, target in ((qf1, qf1_target), (qf2, qf2_target)):
                    for p, tp in zip(net.parameters(), target.parameters()):
                        tp.lerp_(p, TAU)
    rate = steps / (time.perf_counter() - start)
    returns = []
    for episode in range(10):
        obs, _ = env.reset(seed=10 ** 9 + episode)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                action, _ = actor(torch.as_tensor(obs, dtype=torch.float32))
            obs, reward, terminated, truncated, _ = env.step(action.numpy())
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return rate, statistics.mean(returns)


def ours(seed: int, iterations: int, out: Path) -> tuple[float, float]:
    r = subprocess.run([sys.executable, "-m", "metadsl.cli", "run", "specs/sac_pendulum.mrl",
                        "--seed", str(seed), "--iterations", str(iterations), "--threads", "1",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr[-3000:])
    last = (out / "metrics.csv").read_text().strip().splitlines()[-1].split(",")
    steps, wall = int(last[2]), float(last[3])
    score = json.loads((out / "eval.json").read_text())["results"][0]["mean"]
    return steps / wall, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--only", choices=("ours", "handwritten"), default=None)
    a = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in a.seeds:
            row = {"seed": seed}
            if a.only != "handwritten":
                row["ours_steps_per_s"], row["ours_return"] = ours(seed, a.iterations,
                                                                   Path(tmp) / f"s{seed}")
            if a.only != "ours":
                row["hand_steps_per_s"], row["hand_return"] = handwritten(seed, a.iterations)
            if a.only is None:
                row["ratio"] = row["ours_steps_per_s"] / row["hand_steps_per_s"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    for key in rows[0]:
        if key != "seed":
            values = [r[key] for r in rows]
            se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
            print(f"{key}: {statistics.mean(values):.3f} ± {se:.3f}")


if __name__ == "__main__":
    main()
