"""Collecting trajectories: a model acting in a batch of task environments.

Fields are time-major [T, B]. `done` marks where returns stop: the end of the learner's
memory (a trial, for a learner whose memory resets per task), while `prev_done` — the
environment's episode ends — is what the learner sees. `logp` and `value` are recorded
from the behaviour policy.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def collect(model, env, steps: int, gen: torch.Generator) -> dict:
    batch = env.reset().shape[0]
    obs = env.reset()
    prev_action = torch.full((batch,), -1, dtype=torch.long)
    prev_reward = torch.zeros(batch)
    prev_done = torch.zeros(batch)
    state = model.initial_state(batch)
    record: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "logp", "value",
                                                "prev_action", "prev_reward", "prev_done",
                                                "timestep", "episode_done")}
    for t in range(steps):
        fields = {"obs": obs, "prev_action": prev_action, "prev_reward": prev_reward,
                  "prev_done": prev_done, "timestep": torch.full((batch,), t / steps)}
        heads, state = model.step(fields, state)
        pi = heads["pi"]
        action = torch.multinomial(pi.probs, 1, generator=gen).squeeze(-1)
        next_obs, reward, episode_done = env.step(action)
        for key, value in (("obs", obs), ("action", action), ("reward", reward),
                           ("logp", pi.log_prob(action)),
                           ("value", heads.get("v", torch.zeros(batch))),
                           ("prev_action", prev_action), ("prev_reward", prev_reward),
                           ("prev_done", prev_done), ("timestep", fields["timestep"]),
                           ("episode_done", episode_done)):
            record[key].append(value)
        obs, prev_action, prev_reward, prev_done = next_obs, action, reward, episode_done
    out = {k: torch.stack(v) for k, v in record.items()}
    out["done"] = torch.zeros(steps, batch)
    out["done"][-1] = 1.0  # the trial ends: returns do not run past the learner's memory
    return out


def samples(env) -> dict:
    """`collect N samples`: a supervised sequence, read in order (nothing is acted)."""
    return env.sequence()


def episode_return(batch: dict) -> torch.Tensor:
    """Total reward per trial [B]."""
    return batch["reward"].sum(0)
