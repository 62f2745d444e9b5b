"""llm.c's AdamW update (adamw.cuh) with its global grad-norm clip, as a few foreach kernels.

Per parameter, with the gradient g already scaled by the clip factor and t = step + 1:
``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
``p -= lr (m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd p)`` with wd only on 2-D weights.
This equals torch.optim.AdamW; it is written out because torch.optim's first use imports
torch._dynamo, which costs a CPU-second or more per process: a lot for a 10-second twin run.
"""

from __future__ import annotations

import math

import torch


class AdamW:
    """AdamW over ``decay`` (weight-decayed) and ``no_decay`` parameters, llm.c's defaults."""

    def __init__(
        self,
        decay: list[torch.Tensor],
        no_decay: list[torch.Tensor],
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
    ) -> None:
        self.decay, self.params = list(decay), list(decay) + list(no_decay)
        self.weight_decay, self.betas, self.eps = weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def gradients(self) -> list[torch.Tensor]:
        """The parameters' gradients (zeros for a parameter the loss did not reach)."""
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return [p.grad for p in self.params]

    def grad_norm(self) -> torch.Tensor:
        """The global L2 norm of all gradients, a 0-d tensor (what llm.c clips at 1.0)."""
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.gradients())))

    @torch.no_grad()
    def step(self, lr: float, t: int, grad_scale: float = 1.0) -> None:
        """One update at learning rate ``lr``; ``t`` is llm.c's ``step + 1`` (bias correction)."""
        beta1, beta2 = self.betas
        grads = self.gradients()
        if grad_scale != 1.0:
            torch._foreach_mul_(grads, grad_scale)
        torch._foreach_lerp_(self.m, grads, 1.0 - beta1)
        torch._foreach_mul_(self.v, beta2)
        torch._foreach_addcmul_(self.v, grads, grads, value=1.0 - beta2)
        denominator = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denominator, math.sqrt(1.0 - beta2**t))
        torch._foreach_add_(denominator, self.eps)
        if self.weight_decay != 0.0:
            torch._foreach_mul_(self.decay, 1.0 - lr * self.weight_decay)
        torch._foreach_addcdiv_(self.params, self.m, denominator, value=-lr / (1.0 - beta1**t))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
