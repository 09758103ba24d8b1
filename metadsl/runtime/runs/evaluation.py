"""Held-out evaluation: the learner and its baselines on the same task instances and the
same reward draws (common random numbers), so differences between methods are paired."""

from __future__ import annotations

import functools
import math

import torch

from dataclasses import dataclass

from ..execution import keys, rollout
from ..learning import adaptation as adapting
from ..learning import models
from ..tasks import bandits, contextual, families, gym_tasks, informative, mdps, regression

CHUNK = 5000  # instances evaluated at once (memory)


_STARTED: list[float] = []  # when the run's evaluation said its first line


def _say(message: str) -> None:
    """Evaluation can take minutes: say what it is doing and how long it has taken so
    far, on stderr."""
    import sys
    import time

    _STARTED[:] = _STARTED or [time.time()]
    print(f"evaluation: {message}  (evaluating for {time.time() - _STARTED[0]:.0f} s)",
          file=sys.stderr, flush=True)


def _summary(x: torch.Tensor) -> tuple[float, float]:
    return x.mean().item(), (x.std().item() / math.sqrt(len(x)) if len(x) > 1 else 0.0)


def key(seed: int, purpose: str, *index) -> torch.Generator:
    """The key of one of the evaluation's draws, named by what it is for: held-out tasks,
    validation tasks, acting, baselines' reward draws, tuning ... Each is its own counter-based
    stream of (seed, "evaluate", purpose, index...), so no two seeds and no two purposes share
    draws (seed s's validation tasks were seed s + 2's test tasks when seeds were offsets)."""
    return keys.key(seed, "evaluate", purpose, *index)


def _tuned_epsilon(arms: int, pulls: int, seed: int) -> float:
    tuning = bandits.bernoulli_bandits(1000, arms, pulls, key(seed, "tune epsilon", "tasks"))
    gen = key(seed, "tune epsilon", "draws")
    scores = {e: bandits.play(tuning, bandits.epsilon_greedy(e), gen).mean().item()
              for e in (0.01, 0.05, 0.1, 0.2)}
    return max(scores, key=scores.get)


def baseline_policy(name: str, family, arms: int, pulls: int, seed: int):
    """The runtime's policy for a baseline name, tuned on separate instances where the
    baseline has a constant (UCB1's c, ε-greedy's ε), as Duan et al. tuned theirs.
    Bayes-optimal uses the family's own prior (dependent arms are one coin)."""
    if name == "random":
        return bandits.random_policy
    if name == "greedy":
        return bandits.greedy
    if name == "thompson":
        return bandits.thompson
    if name == "ucb1":
        return bandits.ucb1(bandits.tune_ucb1(arms, pulls,
                                              lambda *path: key(seed, "tune ucb1", *path),
                                              instances=1000))
    if name == "epsilon_greedy":
        return bandits.epsilon_greedy(_tuned_epsilon(arms, pulls, seed))
    if name == "bayes_optimal" and family.dependent:
        return bandits.DependentBayesOptimal(family.difficulty, pulls)
    if name == "bayes_optimal":
        return bandits.BayesOptimal(arms, pulls)
    if name == "gittins":
        return bandits.Gittins(pulls)
    raise KeyError(name)


def nominal(state, tasks: str, train: list, args):
    """The `nominal` baseline (Peng et al. 2018's comparison): the spec's own training,
    every outer loop in `train` from a fresh `state`, on the task family `tasks` with its
    randomization removed (each parameter at its nominal value)."""
    from .session import QuietRun

    state = state.replace(**{tasks: getattr(state, tasks).unrandomized()})
    for loop in train:
        loop(args, state, QuietRun("nominal baseline"))
    return state


def held_out(spec: str, model, family, label: str, steps: int, episodes: int | None,
             instances: int, against: list[str], metric: str, seed: int,
             learned: dict | None = None) -> list[dict]:
    """The learner, the other `learned` policies (trained baselines, by name) and every
    baseline on the same held-out instances, one result row each: how depends on the
    family's type (its registration below), never on a name."""
    batch = family.sample(instances, steps, key(seed, "held-out tasks"))
    return _by_family(family, spec, model, batch, instances, label, steps, episodes, against,
                      metric, seed, learned or {})


@functools.singledispatch
def _by_family(family, spec, model, batch, instances, label, steps, episodes, against, metric,
               seed, learned) -> list[dict]:
    raise TypeError(f"no held-out evaluation is registered for {type(family).__name__}")


@_by_family.register(families.RandomQuadratic)
@_by_family.register(families.Sine)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    return _sequences(spec, model, family, batch, label, against, instances)


@_by_family.register(gym_tasks.GymTasks)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    return _gym(spec, {spec: model, **learned}, family, batch, label, steps, episodes,
                against, metric, seed)


@_by_family.register(families.Nav2D)
@_by_family.register(families.Chain)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    return _control(spec, model, family, batch, label, episodes, against, metric, seed)


@_by_family.register(families.ContextualBandit)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    return _contextual(spec, model, family, batch, label, steps, against, metric, seed)


def _learner_trials(spec, model, family, batch, instances, steps, seed) -> dict:
    """The learner's score per instance over its trials; then the global generator is
    seeded for the baselines that draw from it."""
    _say(f"{spec}: {instances} held-out tasks")
    totals = {spec: torch.cat([family.score(t) for t in _trials(model, family, batch, steps,
                                                                   seed)])}
    _seed_global(seed)
    return totals


@_by_family.register(families.InformativeArmBandit)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    totals = _learner_trials(spec, model, family, batch, instances, steps, seed)
    for name in against:
        totals[name] = informative.play(batch, name, key(seed, "baseline draws"))
    return _rows(spec, totals, batch.best_mean() * steps, metric, instances, label)


@_by_family.register(families.TabularMDP)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    totals = _learner_trials(spec, model, family, batch, instances, steps, seed)
    for name in against:
        totals[name] = mdps.play(batch, name, key(seed, "baseline draws"), steps)
    return _rows(spec, totals, None, metric, instances, label)


@_by_family.register(families.BernoulliBandit)
def _(family, spec, model, batch, instances, label, steps, episodes, against, metric, seed,
      learned):
    totals = _learner_trials(spec, model, family, batch, instances, steps, seed)
    for name in against:
        if name == "bayes_optimal" and not family.dependent and batch.arms * steps > 200:
            continue  # the exact DP over independent arms is intractable at this size
        _say(name)
        policy = baseline_policy(name, family, batch.arms, steps, seed)
        totals[name] = bandits.play(batch, policy, key(seed, "baseline draws"))
    return _rows(spec, totals, batch.best_mean() * steps, metric, instances, label)


def _gym(spec, policies, family, batch, label, steps, episodes, against, metric,
         seed) -> list[dict]:
    """Mean episode return per instance of each policy (the learner first) and of
    `random`, on the same env seeds."""
    policies = dict(policies)
    if "random" in against:
        policies["random"] = models.UniformPolicy(family.n_actions, _continuous(family))
    totals = {}
    for method, policy in policies.items():
        traj = rollout.collect(policy, family.env(batch), steps, key(seed, "act", 0), episodes)
        totals[method] = family.score(traj)
    return _rows(spec, totals, None, metric, batch.size, label)


def _contextual(spec, model, family, batch, label, steps, against, metric, seed) -> list[dict]:
    """Recurring contextual bandits: the total reward; the reward on the first pull of a
    context's first visit and of its later visits, and on the last pull of its first
    visit (what was found there: the most a recall can bring back), each as a fraction of
    its best arm's, for the learner and for baselines that keep one posterior per context
    across its visits."""
    _say(f"{spec}: {batch.size} held-out tasks")
    rewards = {spec: torch.cat([t["reward"] for t in _trials(model, family, batch, steps,
                                                             seed)], 1)}
    _seed_global(seed)  # Thompson's posterior draws: the same for every learner
    for name in against:
        _say(name)
        policy = baseline_policy(name, family, family.arms, family.repeats * family.horizon,
                                 seed)
        rewards[name] = contextual.play(batch, policy,
                                        key(seed, "baseline draws"))[:steps]
    new, repeat = batch.first_pulls()
    last = torch.roll(new, batch.pulls - 1, 0)  # a first visit's last pull
    new, repeat, last = new[:steps], repeat[:steps], last[:steps]
    best = contextual.P_BEST

    def first(mask):
        return {m: (r * mask).sum(0) / mask.sum(0).clamp(min=1) / best
                for m, r in rewards.items()}

    return (_rows(spec, {m: r.sum(0) for m, r in rewards.items()}, best * steps, metric,
                  batch.size, label) +
            _rows(spec, first(new), None, "first_pull_new", batch.size, label) +
            _rows(spec, first(last), None, "last_pull_first_visit", batch.size, label) +
            _rows(spec, first(repeat), None, "first_pull_repeat", batch.size, label))


def _trials(model, family, batch, steps: int, seed: int):
    """The learner's trial on every held-out instance, CHUNK instances at a time."""
    for chunk, start in enumerate(range(0, batch.size, CHUNK)):
        part = _slice(batch, slice(start, start + CHUNK))
        yield rollout.collect(model, family.env(part), steps, key(seed, "act", chunk))


def _seed_global(seed: int) -> None:
    """Torch's global generator, which some baselines draw from (Thompson's posterior
    samples), seeded from its own key."""
    gen = key(seed, "global")
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))


def _continuous(family) -> bool:
    return bool(getattr(family, "continuous", False))


def _control(spec, model, family, batch, label, episodes, against, metric,
             seed) -> list[dict]:
    """The learner and `random` on the same draws: one episode per instance, or, for a
    learner whose memory spans a trial of several `episodes`, the trial, scored per
    episode (`return_episode_k`), with the learner's paired gain from its first episode
    to each later one (`return_episode_k_minus_1`): what its memory learned."""
    policies = {spec: model}
    if "random" in against:
        policies["random"] = models.UniformPolicy(family.n_actions, _continuous(family))
    count = episodes or 1
    per_episode = {}
    for method, policy in policies.items():
        traj = rollout.collect(policy, family.env(batch), family.horizon * count,
                               key(seed, "act", 0))
        per_episode[method] = traj["reward"].reshape(count, family.horizon, -1).sum(1)
    if count == 1:
        return _rows(spec, {m: r[0] for m, r in per_episode.items()}, None, metric,
                     batch.size, label)
    rows = []
    for k in range(count):
        rows += _rows(spec, {m: r[k] for m, r in per_episode.items()}, None,
                      f"{metric}_episode_{k + 1}", batch.size, label)
    for k in range(1, count):
        gain = per_episode[spec][k] - per_episode[spec][0]
        mean, stderr = _summary(gain)
        rows.append({"method": spec, "metric": f"{metric}_episode_{k + 1}_minus_1",
                     "mean": mean, "stderr": stderr, "episodes": batch.size, "tasks": label})
    return rows


LOWER_IS_BETTER = ("mse", "regret")


def best_scale(candidates: list[float], scores_of, steps: list[int], metric: str) -> float:
    """The step-size scale for inner steps after the first whose validation scores
    (`scores_of(scale)[k]`, per task), averaged over the reported steps it affects (k ≥ 2),
    are best; the only candidate, or the first where no such step is reported, without
    validating."""
    later = [k for k in steps if k >= 2]
    if len(candidates) == 1 or not later:
        return candidates[0]
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def value(scale: float) -> float:  # a scale whose steps diverge ranks last
        scores = scores_of(scale)
        mean = sign * sum(scores[k].mean().item() for k in later) / len(later)
        return mean if math.isfinite(mean) else -math.inf

    return max(candidates, key=value)


@dataclass
class KShot:
    """A supervised inner loop's evaluation, as the field measures sine regression: every
    step re-reads the task's first `count` samples, and each θ′_k is scored by `loss` on
    fresh samples of the task."""

    model: str
    count: int
    loss: object


def _theta(learner, modules: dict, tasks: int, fresh: tuple = ()) -> dict:
    """θ per task of each model the inner loop holds parameters for; a fresh draw from the
    learner's generator for those reinitialised per task (the same for every method)."""
    return {m: getattr(learner, attr).fresh_per_task(tasks, learner.gen) if m in fresh
            else getattr(learner, attr).parameters_per_task(tasks)
            for m, attr in modules.items()}


def pretrained(state, inner, family, modules: dict, steps: int, batch: int, iterations: int,
               seed: int, phase: str):
    """The `pretrained` baseline: θ from the same initialisation, trained on the task
    mixture by the inner loop's own rule (θ ← the tasks' mean θ′ each iteration):
    multi-task learning, no meta-learning. `modules`: adapted model → state attribute;
    `steps`: the env steps of the inner loop's trial, which tasks are drawn for. Iteration
    i draws from the key the learner's phase `phase` drew from at i: the same tasks."""
    import time

    from .session import timing

    started = time.time()
    for iteration in range(iterations):
        if iteration and iteration % max(1, iterations // 10) == 0:
            _say(f"pretrained baseline, iteration {iteration}/{iterations}  "
                 f"{timing(started, 0, iteration, iterations)}")
        state = state.replace(gen=keys.key(seed, phase, iteration))
        instances = family.sample(batch, steps, state.gen)
        adapted, _ = inner(state, instances, _theta(state, modules, batch), 1, order=1)
        for m, attr in modules.items():
            adapting.carry_over(getattr(state, attr), adapted[m])
    return state


def adaptation(spec: str, learners: dict, inner, family, modules: dict, trial: int,
               instances: int, steps: list[int], scales: list[float], metric: str, label: str,
               seed: int, data: str, kshot: KShot | None = None, fresh: tuple = (),
               variants: dict | None = None) -> list[dict]:
    """Each learner (the meta-learned state and its baselines) adapted by the inner loop
    on the same held-out tasks and random draws; the score after k = 0, 1, ... inner
    steps. RL inner loops collect fresh trajectories (`data`) with each θ′_k, which are
    its score; supervised ones are K-shot (`kshot`). Each method's step size after the
    first step is the candidate of `scales` that scores best on validation tasks; tasks are
    drawn for a `trial` of that many env steps. `variants`: baselines that run their own
    variant of the inner loop (`ppo_baseline`), method → (initial state, inner, step
    sizes): each at the step size whose last reported score is best on the
    validation tasks. `fresh`: models whose parameters start from a fresh draw per task."""
    test_tasks = family.sample(instances, trial, key(seed, "held-out tasks"))
    validation_tasks = family.sample(instances, trial, key(seed, "validation tasks"))
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def scores_of(learner, tasks, scale: float, run=inner, **given) -> list:
        learner = learner.replace(gen=key(seed, "act", 0))
        params = _theta(learner, modules, instances, fresh)
        if kshot is None:
            _, rounds = run(learner, tasks, params, max(steps) + 1, order=1,
                            later_lr_scale=scale, **given)
            return [family.score(r[data]) for r in rounds]
        _, shots = inner(learner, tasks, params, 1, order=1)
        test = rollout.samples(family.env(tasks, copies=kshot.count), learner.gen)
        _, rounds = inner(learner, tasks, params, max(steps), order=1,
                          replay=shots * max(steps), later_lr_scale=scale)
        thetas = [params[kshot.model]] + [r["params"][kshot.model] for r in rounds]
        model = getattr(learner, modules[kshot.model])
        return [adapting.losses(model, theta, test, kshot.loss) for theta in thetas]

    chosen, scores = {}, {}
    for method, learner in learners.items():
        if len(scales) > 1:
            _say(f"{method}: choosing the later steps' size on validation tasks")
        chosen[method] = best_scale(scales, lambda s: scores_of(learner, validation_tasks, s),
                                    steps, metric)
    for method, learner in learners.items():
        _say(f"{method}: {instances} held-out tasks")
        scores[method] = scores_of(learner, test_tasks, chosen[method])
    rates = {}
    for method, (start, run, grid) in (variants or {}).items():

        def final(lr: float) -> float:  # a step size whose lifetime diverges ranks last
            value = sign * scores_of(start, validation_tasks, 1.0, run, lr=lr)[max(steps)]
            value = value.mean().item()
            return value if math.isfinite(value) else -math.inf

        if len(grid) > 1:
            _say(f"{method}: choosing its step size among {grid} on validation tasks")
        rates[method] = max(grid, key=final)
        _say(f"{method}: {instances} held-out tasks (lr {rates[method]})")
        scores[method] = scores_of(start, test_tasks, 1.0, run, lr=rates[method])
        chosen[method] = 1.0
    rows = after_adaptation(spec, scores, steps, tasks=instances, metric=metric, label=label,
                            scales=chosen)
    for row in rows:
        if row["method"] in rates:
            row["lr"] = rates[row["method"]]
    return rows


def after_adaptation(spec: str, scores: dict[str, list[torch.Tensor]], steps: list[int],
                     tasks: int, metric: str, label: str,
                     scales: dict[str, float] | None = None) -> list[dict]:
    """One row per method and inner-step count k: the mean over held-out tasks of each
    task's score after k steps (`scores[method][k]`, rows task-major), with the paired
    difference to the meta-learner on the same tasks and draws, and the method's step-size
    scale for steps after the first."""
    rows = []
    for k in steps:
        per_task = {m: s[k].reshape(tasks, -1).mean(1) for m, s in scores.items()}
        for method, value in per_task.items():
            mean, stderr = _summary(value)
            row = {"method": method, "metric": metric, "adapt_steps": k, "mean": mean,
                   "stderr": stderr, "episodes": len(value), "tasks": label}
            if scales is not None:
                row["later_lr_scale"] = scales[method]
            if method != spec:
                d_mean, d_err = _summary(value - per_task[spec])
                row["diff_to_learner"] = {"mean": d_mean, "stderr": d_err}
            rows.append(row)
    return rows


REPORTED = (0, 1, 2, 3, 4, 5, 6, 10, 20, 35)  # examples seen before the prediction


@torch.no_grad()
def _sequences(spec, model, family, batch, label, against, instances) -> list[dict]:
    """Squared error of the next prediction after k examples, learner and oracle."""
    data = family.env(batch).sequence()
    errors = {spec: (model.sequence(data)["pred"] - data["y"]) ** 2}
    if "oracle" in against:
        errors["oracle"] = (regression.bayes_predictions(batch, family.prior_var) - data["y"]) ** 2
    rows = []
    for k in (k for k in REPORTED if k < data["y"].shape[0]):
        for method, err in errors.items():
            mean, stderr = _summary(err[k])
            rows.append({"method": method, "metric": f"mse_after_{k}_examples", "mean": mean,
                         "stderr": stderr, "episodes": instances, "tasks": label})
    return rows


def _slice(batch, part: slice):
    """Instances `part` of a task batch (time-major draws keep their time axis)."""
    if isinstance(batch, bandits.BanditBatch):
        return bandits.BanditBatch(batch.p[part], batch.u[:, part])
    if isinstance(batch, contextual.ContextualBatch):
        return contextual.ContextualBatch(batch.p[part], batch.codes[part], batch.order[part],
                                          batch.u[:, part], batch.pulls)
    if isinstance(batch, informative.InformativeBatch):
        return informative.InformativeBatch(batch.target[part], batch.arms, batch.pulls)
    return mdps.MDPBatch(batch.mu[part], batch.P[part], batch.noise[:, part],
                         batch.u_next[:, part], batch.u_start[:, part], batch.horizon,
                         batch.reward_std)


def _rows(spec, totals, best, metric, instances, label) -> list[dict]:
    results = []
    for method, total in totals.items():
        value = best - total if metric == "regret" else total
        mean, stderr = _summary(value)
        row = {"method": method, "metric": metric, "mean": mean, "stderr": stderr,
               "episodes": instances, "tasks": label}
        if method != spec:
            learner_value = best - totals[spec] if metric == "regret" else totals[spec]
            d_mean, d_err = _summary(value - learner_value)
            row["diff_to_learner"] = {"mean": d_mean, "stderr": d_err}
        results.append(row)
    return results

