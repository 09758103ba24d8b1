"""RL² speed: the compiled spec against a plain hand-written PyTorch RL², and the bandit
environment alone.

    python bench/rl2_throughput.py [--iterations 160] [--rounds 16]

Both trainers run the same algorithm at the same sizes (the spec's GRU width, 5-armed
bandits, 10 pulls per trial, 256 trials per iteration, PPO with 4 epochs × 4 minibatches),
seeded alike. The hand-written critic is a plain value head; the spec's may be normalised
(PopArt), whose statistics the compiled trainer then also keeps. Targets: compiled /
hand-written env-steps/s ≥ 1.0 (issue 11; 0.95 in issue 3); the batched bandit environment
≥ 20 M env-steps/s at batch 4096.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from metadsl.runtime.runs.session import QuietRun

ROOT = Path(__file__).resolve().parent.parent
ARMS, PULLS, BATCH = 5, 10, 256


# ---- a plain RL², written by hand -------------------------------------------------------


class HandAgent(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.gru = nn.GRU(1 + ARMS + 2, hidden)
        self.pi = nn.Linear(hidden, ARMS)
        self.v = nn.Linear(hidden, 1)

    def forward(self, x, h=None):
        out, h = self.gru(x, h)
        return self.pi(out), self.v(out).squeeze(-1), h


def hand_iteration(agent, opt, gen):
    p = torch.rand(BATCH, ARMS, generator=gen)
    u = torch.rand(PULLS, BATCH, ARMS, generator=gen)
    xs, actions, rewards, logps, values = [], [], [], [], []
    prev_a = torch.zeros(BATCH, ARMS)
    prev_r = torch.zeros(BATCH, 1)
    prev_d = torch.zeros(BATCH, 1)
    h = None
    with torch.no_grad():
        for t in range(PULLS):
            x = torch.cat([torch.ones(BATCH, 1), prev_a, prev_r, prev_d], -1)
            logits, v, h = agent(x[None], h)
            dist = torch.distributions.Categorical(logits=logits[0])
            a = torch.multinomial(dist.probs, 1, generator=gen).squeeze(-1)
            r = (u[t].gather(1, a[:, None]) < p.gather(1, a[:, None])).float().squeeze(-1)
            xs.append(x), actions.append(a), rewards.append(r)
            logps.append(dist.log_prob(a)), values.append(v[0])
            prev_a = nn.functional.one_hot(a, ARMS).float()
            prev_r, prev_d = r[:, None], torch.ones(BATCH, 1)
    x, a, r = torch.stack(xs), torch.stack(actions), torch.stack(rewards)
    old_logp, old_v = torch.stack(logps), torch.stack(values)
    done = torch.zeros(PULLS, BATCH)
    done[-1] = 1
    gamma, lam = 0.99, 0.3
    next_v = torch.cat([old_v[1:], torch.zeros(1, BATCH)]) * (1 - done)
    delta = r + gamma * next_v - old_v
    adv = torch.zeros_like(r)
    acc = torch.zeros(BATCH)
    for t in reversed(range(PULLS)):
        acc = delta[t] + gamma * lam * (1 - done[t]) * acc
        adv[t] = acc
    ret = adv + old_v
    for _ in range(4):
        for idx in torch.randperm(BATCH, generator=gen).chunk(4):
            logits, v, _ = agent(x[:, idx])
            dist = torch.distributions.Categorical(logits=logits)
            norm_adv = (adv[:, idx] - adv[:, idx].mean()) / (adv[:, idx].std() + 1e-8)
            ratio = torch.exp(dist.log_prob(a[:, idx]) - old_logp[:, idx])
            policy = -torch.min(ratio * norm_adv, ratio.clamp(0.8, 1.2) * norm_adv).mean()
            loss = policy + 0.5 * ((v - ret[:, idx]) ** 2).mean() - 0.01 * dist.entropy().mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
            opt.step()


def hand_trainer(hidden: int):
    """`run(k)`: the seconds k iterations of the hand-written RL² take (warmed up)."""
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    agent = HandAgent(hidden)
    opt = torch.optim.Adam(agent.parameters(), lr=3e-4)
    hand_iteration(agent, opt, gen)  # warm-up

    def run(iterations: int) -> float:
        start = time.perf_counter()
        for _ in range(iterations):
            hand_iteration(agent, opt, gen)
        return time.perf_counter() - start

    return run


# ---- the compiled spec ------------------------------------------------------------------


def compiled_trainer():
    """`run(k)`: the seconds k iterations of the spec's own outer loop take (warmed up)."""
    out = Path("/tmp/metadsl-bench-rl2.py")
    subprocess.run([sys.executable, "-m", "metadsl.cli", "compile", "specs/rl2_bandits.mrl",
                    "-o", str(out)], cwd=ROOT, check=True)
    spec = importlib.util.spec_from_file_location("rl2_bench", out)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    args = module.Args(meta__iterations=1)
    assert (args.bandits__arms, args.trial__tau__count, args.meta__meta_batch) == \
        (ARMS, PULLS, BATCH), "the hand-written trainer's sizes are the spec's"
    state = module.build(args)
    module.meta(args, state, QuietRun(show=False))  # warm-up

    def run(iterations: int) -> float:
        args.meta__iterations = iterations
        start = time.perf_counter()
        module.meta(args, state, QuietRun(show=False))
        return time.perf_counter() - start

    return run, args.agent__hidden


def env_rate(batch: int = 4096, steps: int = 1000) -> float:
    from metadsl.runtime.tasks import families as tasks

    family = tasks.BernoulliBandit(arms=ARMS)
    env = family.env(family.sample(batch, steps, torch.Generator().manual_seed(0)))
    action = torch.zeros(batch, dtype=torch.long)
    env.reset()
    start = time.perf_counter()
    for _ in range(steps):
        env.step(action)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=160, help="per trainer, in all")
    parser.add_argument("--rounds", type=int, default=16,
                        help="alternations of the two trainers (a busy machine's drift "
                             "then hits both alike)")
    options = parser.parse_args()
    compiled, hidden = compiled_trainer()
    hand = hand_trainer(hidden)
    each = max(1, options.iterations // options.rounds)
    times = {"hand": [], "compiled": []}
    for _ in range(options.rounds):
        times["hand"].append(hand(each))
        times["compiled"].append(compiled(each))
    steps = each * BATCH * PULLS
    rate = {k: steps * len(v) / sum(v) for k, v in times.items()}
    ratios = sorted(h / c for h, c in zip(times["hand"], times["compiled"]))
    print(f"GRU {hidden}")
    print(f"hand-written RL²: {rate['hand']:,.0f} env-steps/s")
    print(f"compiled RL²:     {rate['compiled']:,.0f} env-steps/s  (ratio "
          f"{rate['compiled'] / rate['hand']:.3f}; per round {ratios[0]:.3f}–{ratios[-1]:.3f}, "
          f"median {ratios[len(ratios) // 2]:.3f}; target ≥ 1.0)")
    print(f"bandit environment alone, batch 4096: {env_rate() / 1e6:,.1f} M env-steps/s "
          "(target ≥ 20 M)")


if __name__ == "__main__":
    main()
