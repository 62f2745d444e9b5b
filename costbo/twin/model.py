"""The GPT-2 model of llm.c's train_gpt2cu, in PyTorch, for the CPU twin.

Same architecture and parameter layout as llm.c: learned position embeddings for 1024 positions,
pre-LayerNorm blocks (eps 1e-5), causal self-attention with a fused qkv projection, a 4C MLP with
tanh-approximated GELU, a final LayerNorm and an LM head tied to the token embedding. The token
embedding has ``padded_vocab_size`` rows (50304 for GPT-2) but logits are computed for the first
``vocab_size`` rows only, as llm.c's fused classifier ignores the padding.

Initialization follows llm.c's ``gpt_build``: LayerNorm weights 1, biases 0, the first
``vocab_size`` rows of the token embedding, the position embedding and the qkv and MLP-in weights
~ N(0, 0.02), the two projections back into the residual stream ~ N(0, 0.02 / sqrt(2 L)), the padded
embedding rows 0. The draws come from one generator seeded 42 in llm.c's order (wte, wpe, then per
layer qkv, attention-out, MLP-in, MLP-out); llm.c's mt19937 ``normal_`` reproduces torch's, so
the initial weights match llm.c's fp32 draws up to float rounding (llm.c then stores them in bf16).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_SEQ_LEN = 1024
LAYERNORM_EPS = 1e-5


GELU_SCALE = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715
# Below this 2u, 1 + tanh(u) rounds to 0 in float32 (u < -9.0108), so llm.c's formula (and
# torch's) gives exactly 0 there, while sigmoid(2u) is still a tiny positive number.
GELU_ZERO_BELOW = -18.02


class TanhGELU(torch.autograd.Function):
    """llm.c's GELU, ``0.5 x (1 + tanh(u))`` with ``u = sqrt(2/pi) (x + 0.044715 x^3)``.

    Computed as ``x sigmoid(2u)``, the same function (``0.5 (1 + tanh(u)) = sigmoid(2u)``):
    torch's CPU tanh is ~4x slower than its sigmoid, and F.gelu's backward computes tanh again.
    The sigmoid is kept for the backward pass: ``dy/dx = s + x s (1 - s) d(2u)/dx``. It is set to
    0 where the tanh form is exactly 0: besides matching it, this keeps denormal floats (which
    x86 CPUs handle ~100x slower) out of the products of the far negative tail, where they made
    whole training steps 20% slower.
    """

    @staticmethod
    def forward(ctx, x):
        z = (x * x).mul_(2 * GELU_SCALE * GELU_CUBIC).add_(2 * GELU_SCALE).mul_(x)  # 2u
        s = torch.sigmoid(z).masked_fill_(z < GELU_ZERO_BELOW, 0.0)
        ctx.save_for_backward(x, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, s = ctx.saved_tensors
        slope = (x * x).mul_(6 * GELU_SCALE * GELU_CUBIC).add_(2 * GELU_SCALE)  # d(2u)/dx
        return (1.0 - s).mul_(s).mul_(x).mul_(slope).add_(s).mul_(grad)


class Block(nn.Module):
    """One pre-LN transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(channels, eps=LAYERNORM_EPS)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.attn_proj = nn.Linear(channels, channels)
        self.ln2 = nn.LayerNorm(channels, eps=LAYERNORM_EPS)
        self.fc = nn.Linear(channels, 4 * channels)
        self.fc_proj = nn.Linear(4 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_size)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.fc_proj(TanhGELU.apply(self.fc(self.ln2(x))))


class FusedClassifier(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T``, with its gradient computed in the forward pass.

    llm.c's fused classifier does the same: the ``N x V`` logits never exist all at once (with
    GPT-2's 50257 tokens a B=16, T=128 batch would need 411 MB per copy), only blocks of rows
    of at most ~16 MB, turned into ``softmax - onehot`` in place and folded into the gradients
    of ``h`` (``N x C``) and ``weight`` (``V x C``) straight away.
    """

    @staticmethod
    def forward(ctx, h, weight, targets, want_grad: bool):
        n, vocab = h.shape[0], weight.shape[0]
        rows = max(1, 2**22 // vocab)
        loss = h.new_zeros((), dtype=torch.float64)
        grad_h = torch.empty_like(h) if want_grad else None
        grad_weight = torch.zeros_like(weight) if want_grad else None
        for start in range(0, n, rows):
            h_block, t_block = h[start : start + rows], targets[start : start + rows]
            logits = h_block @ weight.T
            # softmax in place, few passes over the block: exp(logits - max) / sum
            shift = logits.amax(dim=1, keepdim=True)
            target_logits = logits.gather(1, t_block[:, None]) - shift
            exps = logits.sub_(shift).exp_()
            sums = exps.sum(dim=1, keepdim=True)
            loss += (sums.log() - target_logits).sum(dtype=torch.float64)
            if want_grad:
                probs = exps.mul_(1.0 / n / sums)  # softmax / n: the mean over n tokens
                probs[torch.arange(probs.shape[0], device=probs.device), t_block] -= 1.0 / n
                torch.mm(probs, weight, out=grad_h[start : start + rows])
                grad_weight.addmm_(probs.T, h_block)
        if want_grad:
            ctx.save_for_backward(grad_h, grad_weight)
        return (loss / n).to(h.dtype)

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_weight = ctx.saved_tensors
        return grad_h * grad_loss, grad_weight * grad_loss, None, None


class GPT(nn.Module):
    """GPT-2 as llm.c builds it from scratch (``-1d depth -1c channels -1h heads``)."""

    def __init__(
        self,
        depth: int,
        channels: int,
        heads: int,
        vocab_size: int = 50257,
        padded_vocab_size: int = 50304,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.wte = nn.Embedding(padded_vocab_size, channels)
        self.wpe = nn.Embedding(MAX_SEQ_LEN, channels)
        self.blocks = nn.ModuleList(Block(channels, heads) for _ in range(depth))
        self.ln_f = nn.LayerNorm(channels, eps=LAYERNORM_EPS)
        self._init_like_llmc(depth)

    @torch.no_grad()
    def _init_like_llmc(self, depth: int) -> None:
        generator = torch.Generator().manual_seed(42)
        residual_std = 0.02 / math.sqrt(2 * depth)
        for p in self.parameters():
            # LayerNorm weights become 1 below; every other parameter not drawn stays 0
            p.zero_()
        self.wte.weight[: self.vocab_size].normal_(0.0, 0.02, generator=generator)
        self.wpe.weight.normal_(0.0, 0.02, generator=generator)
        for block in self.blocks:
            block.qkv.weight.normal_(0.0, 0.02, generator=generator)
            block.attn_proj.weight.normal_(0.0, residual_std, generator=generator)
            block.fc.weight.normal_(0.0, 0.02, generator=generator)
            block.fc_proj.weight.normal_(0.0, residual_std, generator=generator)
            block.ln1.weight.fill_(1.0)
            block.ln2.weight.fill_(1.0)
        self.ln_f.weight.fill_(1.0)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The final LayerNorm's output, ``B x T x C``, for token ids ``B x T``."""
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe.weight[:T]
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits over the real vocabulary, ``B x T x vocab_size``, for token ids ``B x T``."""
        # tied head over the unpadded rows only: padded logits never enter the softmax
        return F.linear(self.hidden(idx), self.wte.weight[: self.vocab_size])

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats per token) of predicting ``targets`` (B x T) from ``idx``."""
        h = self.hidden(idx)
        return FusedClassifier.apply(
            h.reshape(-1, h.shape[-1]),
            self.wte.weight[: self.vocab_size],
            targets.reshape(-1),
            torch.is_grad_enabled(),
        )

    def parameters_by_decay(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(decayed, not decayed) parameters as llm.c splits them: 2-D weights (embeddings,
        matrices) get weight decay; LayerNorm parameters and biases do not."""
        params = list(self.parameters())
        return [p for p in params if p.dim() == 2], [p for p in params if p.dim() != 2]
