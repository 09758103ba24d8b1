"""Evolution strategies (Salimans et al. 2017): perturb θ, score each member, step θ.

One generation: member i acts with θ + σ·s_i·ε_{j(i)}, where with mirrored sampling
j(i) = i // 2 and s_i = ±1 (pairs share their noise), else j(i) = i and s_i = 1. Each
ε_j is drawn from its own key, (seed, phase, iteration, "eps", target, j), so a worker
given the path regenerates exactly the driver's noise: only θ and scalars travel.
The fitnesses are shaped by centered ranks, the NES estimate
ĝ = (1 / n) Σ_i F̂_i s_i ε_{j(i)} is the ascent direction, and Adam (β₁ settable: EPG
uses 0) steps θ up ĝ − l2·θ.
"""

from __future__ import annotations

import torch

from ..errors import NonFiniteLoss, SettingError
from ..execution import keys


def final_return(family, data: dict) -> torch.Tensor:
    """`final_return(loop)`: the task family's score of a member's last collect per row
    (the mean episode return on gymnasium tasks); the execution averages each member's."""
    return family.score(data)


def centered_ranks(fitness: torch.Tensor) -> torch.Tensor:
    """Ranks scaled to [−0.5, 0.5]: 0 for the worst, n − 1 for the best, over n − 1, minus
    a half (openai/evolution-strategies-starter's shaping). Ties take their order."""
    n = fitness.numel()
    ranks = torch.empty(n, dtype=torch.float64)
    ranks[fitness.argsort(stable=True)] = torch.arange(n, dtype=torch.float64)
    return (ranks / (n - 1) - 0.5).to(fitness.dtype)


def signs(population: int, mirrored: bool) -> torch.Tensor:
    """s_i: +1, −1, +1, −1 ... with mirrored pairs, else all +1."""
    if not mirrored:
        return torch.ones(population)
    return 1.0 - 2.0 * (torch.arange(population) % 2).float()


def noise_index(member: int, mirrored: bool) -> int:
    """j(i): the noise a member draws (mirrored pairs share one)."""
    return member // 2 if mirrored else member


def nes_estimate(shaped: torch.Tensor, noise: torch.Tensor,
                 member_signs: torch.Tensor) -> torch.Tensor:
    """ĝ = (1 / n) Σ_i F̂_i s_i ε_i, with `noise` [n, dim] each member's ε (pairs' rows
    equal). The paper's estimate also divides by σ; the reference codes
    (evolution-strategies-starter, openai/EPG), whose settings the specs cite, do not, and
    under Adam that constant matters only against l2 and ε, so we follow them."""
    return (shaped * member_signs) @ noise / shaped.numel()


class Generation:
    """The members of one generation: θ (flat, as the driver had it), the noise keys and
    the rule's σ. Stateless past its fields, so a worker can be handed one."""

    def __init__(self, target: str, theta: torch.Tensor, shapes: list[tuple[str, torch.Size]],
                 sigma: float, population: int, mirrored: bool, path: tuple,
                 common_draws: bool = False):
        self.target, self.theta, self.shapes, self.sigma = target, theta, shapes, sigma
        self.population, self.mirrored, self.path = population, mirrored, tuple(path)
        self.common_draws = common_draws

    def draws(self, path: tuple, i: int) -> tuple:
        """The key path member i draws its actions, environment seeds and fresh networks
        from: its own, (..., "member", i), or with common draws the generation's one, so
        that members differ by their perturbations alone (common random numbers)."""
        return tuple(path) if self.common_draws else (*path, i)

    def noise(self, j: int) -> torch.Tensor:
        """ε_j, regenerated from its key."""
        return torch.randn(self.theta.numel(), generator=keys.key(*self.path, j))

    def member_vector(self, i: int) -> torch.Tensor:
        sign = 1.0 if not self.mirrored or i % 2 == 0 else -1.0
        return self.theta + (self.sigma * sign) * self.noise(noise_index(i, self.mirrored))

    def member(self, i: int, rows: int) -> dict[str, dict[str, torch.Tensor]]:
        """Member i's parameters, {target model: its per-row parameters}, `rows` copies (one
        per task)."""
        return {self.target: unflatten(self.member_vector(i), self.shapes, rows)}

    def noise_matrix(self) -> torch.Tensor:
        """[n, dim]: each member's ε (the driver's copy for the estimate)."""
        drawn = [self.noise(j) for j in range(noise_index(self.population - 1,
                                                          self.mirrored) + 1)]
        return torch.stack([drawn[noise_index(i, self.mirrored)]
                            for i in range(self.population)])


def unflatten(vector: torch.Tensor, shapes: list[tuple[str, torch.Size]],
              rows: int) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for name, shape in shapes:
        size = shape.numel()
        out[name] = vector[at:at + size].reshape(shape).unsqueeze(0).expand(rows, *shape)
        at += size
    return out


class EvolutionStrategy(torch.optim.Optimizer):
    """`es(population, sigma, lr, beta1, l2, lr_decay_at, lr_decay, sigma_decay, ranks,
    mirrored, common_draws)`: the run state's ES optimizer over a model's parameters. Its state (Adam's
    moments, the generation count) is an optimizer's, so checkpoints and `--resume` keep
    it as they keep any optimizer's."""

    def __init__(self, params, population: int = 256, sigma: float = 0.01, lr: float = 1e-2,
                 beta1: float = 0.9, l2: float = 0.0, lr_decay_at: float = 1.0,
                 lr_decay: float = 1.0, sigma_decay: float = 1.0, ranks: str = "centered",
                 mirrored: bool = True, common_draws: bool = False):
        if mirrored and population % 2:
            raise SettingError(f"population = {population} is odd, and mirrored sampling "
                               "draws its members in pairs θ ± σε: make it even, or set "
                               "mirrored = false")
        super().__init__(params, dict(lr=lr, initial_lr=lr, initial_sigma=sigma, beta1=beta1,
                                      beta2=0.999, eps=1e-8))
        self.population, self.l2, self.ranks, self.mirrored = population, l2, ranks, mirrored
        self.lr_decay_at, self.lr_decay, self.sigma_decay = lr_decay_at, lr_decay, sigma_decay
        self.common_draws = common_draws

    def generation(self, target: str, model: torch.nn.Module, progress: float,
                   path: tuple) -> Generation:
        """This iteration's members of `model`'s θ (the spec's `target`), their noise under
        key path `path`. σ and lr follow their schedules first: ×0.1 once `progress`
        reaches `lr_decay_at` (EPG), ×`lr_decay` and ×`sigma_decay` per generation (POET)."""
        group, done = self.param_groups[0], self.generations
        sigma = group["initial_sigma"] * self.sigma_decay ** done
        group["lr"] = group["initial_lr"] * self.lr_decay ** done * \
            (0.1 if progress >= self.lr_decay_at else 1.0)
        named = [(n, p.shape) for n, p in model.named_parameters()]
        theta = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
        return Generation(target, theta, named, sigma, self.population, self.mirrored, path,
                          self.common_draws)

    @property
    def generations(self) -> int:
        """ES steps taken, kept in the optimizer's state, so a resumed run's schedules
        continue where they were."""
        return int(self.state[self.param_groups[0]["params"][0]].get("step", 0))

    def update(self, members: Generation, fitness: torch.Tensor) -> dict:
        """θ ← θ + Adam(ĝ − l2·θ) from the members' fitnesses, in member order."""
        if not bool(torch.isfinite(fitness).all()):
            raise NonFiniteLoss("a population member's fitness is NaN or infinite")
        shaped = centered_ranks(fitness) if self.ranks == "centered" else fitness
        estimate = nes_estimate(shaped, members.noise_matrix(),
                                signs(members.population, members.mirrored))
        self.ascend(estimate)
        return {"fitness_mean": float(fitness.mean()), "fitness_max": float(fitness.max()),
                "grad_norm": float(estimate.norm()), "sigma": members.sigma,
                "lr": self.param_groups[0]["lr"]}

    @torch.no_grad()
    def ascend(self, estimate: torch.Tensor) -> None:
        """One Adam step up the direction ĝ − l2·θ, in the reference codes' form (their
        bias correction folds into the step size, so ε is not rescaled as torch's Adam
        rescales it): a = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ), θ += a·m/(√v + ε)."""
        group, at = self.param_groups[0], 0
        t = self.generations + 1
        a = group["lr"] * (1 - group["beta2"] ** t) ** 0.5 / (1 - group["beta1"] ** t)
        for p in group["params"]:
            g = estimate[at:at + p.numel()].reshape(p.shape) - self.l2 * p
            at += p.numel()
            state = self.state[p]
            m = state.setdefault("m", torch.zeros_like(p))
            v = state.setdefault("v", torch.zeros_like(p))
            m.mul_(group["beta1"]).add_(g, alpha=1 - group["beta1"])
            v.mul_(group["beta2"]).addcmul_(g, g, value=1 - group["beta2"])
            p.add_(a * m / (v.sqrt() + group["eps"]))
            state["step"] = t
