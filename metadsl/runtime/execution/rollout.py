"""Collecting trajectories: a model acting in a batch of task environments.

Fields are time-major [T, B]. `done` marks where returns stop: the end of the learner's
memory (a trial, for a learner whose memory resets per task), while `prev_done` — the
environment's episode ends — is what the learner sees. A trial of N episodes whose
lengths vary is padded, and `valid` marks its real steps. `logp` and `value` are recorded
from the behaviour policy.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Policy(Protocol):
    """What acts in a rollout: anything that maps a step's fields (observation, previous
    action, reward and episode end, and the policy's own memory) to action distributions.
    A recurrent or feed-forward model, a uniform baseline — and, as they are built, a kNN
    table's ε-greedy values or a skill-conditioned network — are policies. `params`: one
    set of parameters per task (adapted copies θ′), where the policy has parameters."""

    def initial_state(self, batch: int): ...

    def step(self, fields: dict, state, params: dict | None = None) -> tuple[dict, object]: ...


@torch.no_grad()
def collect(model: Policy, env, steps: int, gen: torch.Generator, episodes: int | None = None,
            params: dict | None = None, memory: str = "trial") -> dict:
    """Roll `model` out for at most `steps` steps. With `episodes`, an instance's trial ends
    once it has completed that many episodes; where episodes vary in length (gymnasium),
    instances that finish early are padded to the longest: `valid` is 0 on padding, whose
    rewards are 0 and whose `done` is 1 (no return flows through it). `params` are a
    feed-forward model's parameters per task (adapted copies θ′), rows task-major.
    `memory`: where the learner's memory ends, and so its returns: at the end of the
    `trial`, or of each `episode` (a policy without memory)."""
    obs = env.reset()
    batch = obs.shape[0]
    prev_action = torch.zeros(batch, env.n_actions) if getattr(env, "continuous", False) \
        else torch.full((batch,), -1, dtype=torch.long)  # -1: no action yet
    prev_reward = torch.zeros(batch)
    prev_done = torch.zeros(batch)
    no_value = torch.zeros(batch)  # recorded for models without a value head
    finished = torch.zeros(batch)  # instances whose trial has ended
    completed = torch.zeros(batch)
    valid = torch.ones(batch)
    progress = (torch.arange(steps, dtype=torch.float32) / steps)[:, None].expand(steps, batch)
    state = model.initial_state(batch)
    record: dict[str, list] = {k: [] for k in ("obs", "next_obs", "action", "reward", "logp",
                                                "value",
                                                "prev_action", "prev_reward", "prev_done",
                                                "timestep", "episode_done", "terminated",
                                                "valid")}
    for t in range(steps):
        fields = {"obs": obs, "prev_action": prev_action, "prev_reward": prev_reward,
                  "prev_done": prev_done, "timestep": progress[t]}
        heads, state = model.step(fields, state, params)
        pi = heads["pi"]
        action = pi.sample(gen)
        stepped = env.step(action, 1 - finished) \
            if episodes is not None and getattr(env, "steps_live_rows", False) \
            else env.step(action)
        if getattr(env, "reports_truncation", False):
            # s_{t+1} as the episode saw it, its termination apart from a time limit, and
            # the observation the next step starts from (a restarted episode's first)
            next_obs, reward, episode_done, terminated, restarted = stepped
        else:  # an episode of a tensor task ends by its dynamics or its horizon alike
            next_obs, reward, episode_done = stepped
            terminated, restarted = episode_done, next_obs
        if episodes is not None:  # instances past their last episode are padding
            valid = 1 - finished
            reward, episode_done = reward * valid, episode_done * valid
            terminated = terminated * valid
        for key, value in (("obs", obs), ("next_obs", next_obs), ("action", action),
                           ("reward", reward),
                           ("logp", pi.log_prob(action)), ("value", heads.get("v", no_value)),
                           ("prev_action", prev_action), ("prev_reward", prev_reward),
                           ("prev_done", prev_done), ("timestep", fields["timestep"]),
                           ("episode_done", episode_done), ("terminated", terminated),
                           ("valid", valid)):
            record[key].append(value)
        obs, prev_action, prev_reward, prev_done = restarted, action, reward, episode_done
        if episodes is not None:
            completed += episode_done
            finished = torch.maximum(finished, (completed >= episodes).float())
            if bool(finished.all()):
                break
    out = {k: torch.stack(v) for k, v in record.items()}
    valid = out.pop("valid")
    # the trial ends: returns do not run past the learner's memory, nor through padding
    out["done"] = 1 - valid
    out["done"][valid.sum(0).long() - 1, torch.arange(batch)] = 1.0
    if memory == "episode":
        out["done"] = torch.maximum(out["done"], out["episode_done"])
    if not bool(valid.all()):
        out["valid"] = valid  # reductions in losses (ops.mean, ...) skip the padding
    return out


def samples(env, gen: torch.Generator) -> dict:
    """`collect N samples`: supervised data, read in order (nothing is acted)."""
    return env.sequence(gen)


def steps_taken(batch: dict) -> int:
    """The environment steps a rollout took: its real steps, not its padding."""
    return int(batch["valid"].sum()) if "valid" in batch else batch["done"].numel()


def trial_return(batch: dict) -> torch.Tensor:
    """Total reward per trial [B]: the score of tasks whose trial is a fixed number of
    fixed-length episodes (bandits, tabular MDPs)."""
    return batch["reward"].sum(0)


def mean_episode_return(batch: dict) -> torch.Tensor:
    """Mean return of each instance's completed episodes [B], for tasks whose episodes end
    when they end (gymnasium); an instance that completed none counts its partial return."""
    done = batch["episode_done"].bool()
    finished = done.sum(0)
    completed = (batch["reward"] * (done.flip(0).cumsum(0).flip(0) > 0)).sum(0)
    return torch.where(finished > 0, completed / finished.clamp(min=1), batch["reward"].sum(0))
