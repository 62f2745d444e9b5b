"""A simulated A10G: how many seconds llm.c spends on each part of a run, and its memory.

Seconds per optimizer step come from llm.c's FLOPs (``flops_per_token x tokens``) at a
size-dependent efficiency: matmuls with few channels run far below peak, the 50304-wide LM head's
logits are memory traffic whatever the width, and every kernel launch costs microseconds. The
result is scaled so that GPT-2 124M takes ``reference_step_seconds`` (7.7-10 s, i.e. a $15-20 full
run at $1.50/hour, calibration.md). Fixed costs are what llm.c's loop does besides training:
process start and data loading, a slow step 0, each val eval (``-m`` batches), HellaSwag
(10,042 examples), sample generation and checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from costbo.gpt2 import (
    MAX_SEQ_LEN,
    PADDED_VOCAB_SIZE,
    TOKENS_PER_STEP,
    ModelShape,
    num_parameters,
)

DEVICE_NAME = "NVIDIA A10G"
PEAK_BF16_FLOPS = 70e12  # dense bf16 tensor-core throughput of AWS's A10G, FLOP/s
MEMORY_BANDWIDTH = 600e9  # bytes/s
MEMORY_MIB = 22731  # what cudaMemGetInfo reports as total on a g5 instance
CONTEXT_MIB = 420  # CUDA context, cuBLAS/cuDNN workspaces: used before llm.c allocates anything
HELLASWAG_EXAMPLES = 10042
HELLASWAG_COMPLETIONS = 4
FORWARD_SHARE = 0.38  # an eval forward pass costs this share of a training step's time per token
MANAGED_MEMORY_SLOWDOWN = 1.5  # optimizer state in host memory: llm.c says "may run much slower"
REFERENCE_MODEL = ModelShape(12, 768, 12)
REFERENCE_MICRO_BATCH = 32  # the homework's -b; -b 64 does not fit 124M on an A10G


@dataclass(frozen=True)
class SimulatedA10G:
    """Seconds and bytes of llm.c's work on one A10G-like GPU; ``price_per_hour`` in dollars."""

    reference_step_seconds: float = 8.5  # GPT-2 124M, -b 32, -t 1024, 524288 tokens per step
    startup_seconds: float = 35.0  # process start, CUDA/cuDNN init, data loader globbing
    init_seconds_per_parameter: float = 3e-8  # llm.c initialises weights on the host
    first_step_extra_seconds: float = 5.0  # step 0: cuBLAS/cuDNN autotuning, lazy allocations
    matmul_half_channels: float = 128.0  # channels at which matmul efficiency halves
    matmul_peak_efficiency: float = 0.85
    head_memory_passes: float = 4.0  # reads+writes of the (B, T, 50304) bf16 logits per token
    layer_memory_passes: float = 40.0  # reads+writes of (B, T, C) bf16 activations per layer
    kernel_launch_seconds: float = 8e-6
    price_per_hour: float = 1.5

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SimulatedA10G:
        """One A10G-like machine with its constants drawn from plausible ranges."""
        return cls(
            reference_step_seconds=float(rng.uniform(7.7, 10.0)),
            startup_seconds=float(rng.uniform(20.0, 60.0)),
            first_step_extra_seconds=float(rng.uniform(2.0, 10.0)),
            matmul_half_channels=float(rng.uniform(96.0, 192.0)),
            head_memory_passes=float(rng.uniform(3.0, 6.0)),
            kernel_launch_seconds=float(rng.uniform(5e-6, 12e-6)),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    # --- training -----------------------------------------------------------------------
    def _raw_step_seconds(
        self, model: ModelShape, micro_batch: int, seq_len: int, tokens_per_step: int
    ) -> float:
        depth, c = model.depth, model.channels
        eff = self.matmul_peak_efficiency * c / (c + self.matmul_half_channels)
        body_flops = 6.0 * depth * (12 * c * c + 13 * c) + 6.0 * depth * c * seq_len
        head_flops = 6.0 * (PADDED_VOCAB_SIZE + MAX_SEQ_LEN) * c + 12.0 * c
        compute = tokens_per_step * (body_flops + head_flops) / (PEAK_BF16_FLOPS * eff)
        bytes_per_token = 2.0 * (
            self.head_memory_passes * PADDED_VOCAB_SIZE + self.layer_memory_passes * depth * c
        )
        memory = tokens_per_step * bytes_per_token / MEMORY_BANDWIDTH
        micro_steps = max(1, tokens_per_step // max(1, micro_batch * seq_len))
        kernels = 30 * depth + 25  # forward + backward launches per micro-step
        launches = micro_steps * kernels * self.kernel_launch_seconds
        return compute + memory + launches

    def step_seconds(
        self,
        model: ModelShape,
        micro_batch: int = REFERENCE_MICRO_BATCH,
        seq_len: int = MAX_SEQ_LEN,
        tokens_per_step: int = TOKENS_PER_STEP,
    ) -> float:
        """Seconds of one optimizer step (all micro-steps) of ``model``."""
        raw = self._raw_step_seconds(model, micro_batch, seq_len, tokens_per_step)
        ref = self._raw_step_seconds(
            REFERENCE_MODEL, REFERENCE_MICRO_BATCH, MAX_SEQ_LEN, TOKENS_PER_STEP
        )
        slowdown = MANAGED_MEMORY_SLOWDOWN if self.uses_managed_memory(model, micro_batch) else 1.0
        return self.reference_step_seconds * slowdown * raw / ref

    # --- fixed costs --------------------------------------------------------------------
    def startup_total_seconds(self, model: ModelShape) -> float:
        """From process start to the first val eval: init, data loading, weight init."""
        return self.startup_seconds + self.init_seconds_per_parameter * model.num_parameters()

    def forward_seconds(
        self, model: ModelShape, tokens: int, micro_batch: int = REFERENCE_MICRO_BATCH
    ) -> float:
        """Seconds of forward passes (no backward) over ``tokens`` tokens."""
        per_token = self.step_seconds(model, micro_batch) / TOKENS_PER_STEP
        return FORWARD_SHARE * per_token * tokens

    def val_seconds(
        self,
        model: ModelShape,
        batches: int = 20,
        micro_batch: int = REFERENCE_MICRO_BATCH,
        seq_len: int = MAX_SEQ_LEN,
    ) -> float:
        """One val eval: ``batches`` (``-m``) forward passes of ``micro_batch x seq_len``."""
        return 0.2 + self.forward_seconds(model, max(0, batches) * micro_batch * seq_len)

    def hellaswag_batches(self, micro_batch: int = REFERENCE_MICRO_BATCH) -> int:
        """llm.c fits ``B // 4`` examples (4 completions each) per batch."""
        per_batch = micro_batch // HELLASWAG_COMPLETIONS
        return -(-HELLASWAG_EXAMPLES // per_batch) if per_batch > 0 else 0

    def hellaswag_seconds(
        self, model: ModelShape, micro_batch: int = REFERENCE_MICRO_BATCH, seq_len: int = 1024
    ) -> float:
        """One HellaSwag eval: every batch is a full ``micro_batch x seq_len`` forward pass."""
        batches = self.hellaswag_batches(micro_batch)
        return 0.5 + 0.002 * batches + self.forward_seconds(model, batches * micro_batch * seq_len)

    def generation_seconds(self, model: ModelShape, gen_tokens: int = 64) -> float:
        """Sampling ``gen_tokens`` tokens: one small forward pass (and a host sync) per token."""
        per_token = (
            (20 * model.depth + 15) * self.kernel_launch_seconds
            + 1e-4
            + self.forward_seconds(model, 256)
        )
        return 0.1 + max(0, gen_tokens - 1) * per_token

    def checkpoint_seconds(self, model: ModelShape) -> float:
        """Writing model (bf16) and optimizer state (fp32 master, m, v) at ~1.5 GB/s."""
        return 0.5 + model.num_parameters() * (2 + 4 + 4 + 4) / 1.5e9

    # --- memory -------------------------------------------------------------------------
    def activation_bytes(
        self, model: ModelShape, micro_batch: int, seq_len: int = MAX_SEQ_LEN, recompute: int = 1
    ) -> int:
        """llm.c's activation buffer (fill_in_activation_sizes, cuDNN build), in bytes."""
        b, t = micro_batch, seq_len
        depth, c, nh, vp = model.depth, model.channels, model.heads, PADDED_VOCAB_SIZE
        bf16 = 2 * (
            b * t * c  # encoded
            + (depth * b * t * c if recompute < 2 else 0)  # ln1
            + depth * b * t * c  # atty
            + depth * b * t * c  # residual2
            + (depth * b * t * c if recompute < 2 else 0)  # ln2
            + depth * b * t * 4 * c  # fch
            + (depth * b * t * 4 * c if recompute < 1 else b * t * 4 * c)  # fch_gelu
            + depth * b * t * c  # residual3
            + b * t * c  # lnf
            + depth * b * t * 3 * c  # qkvr
            + b * t * max(3 * c, nh * t, vp)  # output (logits)
            + b * t * 4 * c  # scratch_bt4c
            + b * t * c  # scratch_btc
        )
        fp32 = 4 * (4 * depth * b * t + 2 * b * t + b * t + depth * b * nh * t)
        return bf16 + fp32

    def parameter_bytes(self, model: ModelShape) -> int:
        """bf16 weights; gradients take as much again, AdamW m, v and master weights 4 B each."""
        return 2 * num_parameters(model.depth, model.channels)

    def activations_fit(
        self, model: ModelShape, micro_batch: int, seq_len: int = MAX_SEQ_LEN, recompute: int = 1
    ) -> bool:
        """Whether llm.c's activation cudaMalloc succeeds (else: CUDA out of memory, exit 1)."""
        used = CONTEXT_MIB * 2**20 + 2 * self.parameter_bytes(model)
        acts = self.activation_bytes(model, micro_batch, seq_len, recompute)
        return used + acts <= MEMORY_MIB * 2**20

    def uses_managed_memory(
        self, model: ModelShape, micro_batch: int, seq_len: int = MAX_SEQ_LEN, recompute: int = 1
    ) -> bool:
        """Whether AdamW m, v and master weights spill into cudaMallocManaged host memory."""
        used = CONTEXT_MIB * 2**20 + 2 * self.parameter_bytes(model)
        used += self.activation_bytes(model, micro_batch, seq_len, recompute)
        used += 12 * num_parameters(model.depth, model.channels)
        return used > MEMORY_MIB * 2**20

    # --- whole runs ---------------------------------------------------------------------
    def run_seconds(
        self,
        steps: int,
        model: ModelShape,
        val_every: int | None = None,
        hellaswag: bool = False,
        *,
        micro_batch: int = REFERENCE_MICRO_BATCH,
        val_batches: int = 20,
        sample_every: int = 0,
        checkpoint_every: int = 0,
        stop_at: int | None = None,
    ) -> float:
        """Wall seconds of a whole llm.c run: startup, every step, and every eval llm.c's loop
        makes (``val_every`` None = val only at step 0 and at the end, like ``-v`` >= steps)."""
        train_steps = steps if stop_at is None else stop_at
        if train_steps < 0:
            return self.startup_total_seconds(model)
        step_s = self.step_seconds(model, micro_batch)
        total = self.startup_total_seconds(model)
        if train_steps > 0:
            total += train_steps * step_s + self.first_step_extra_seconds
        if val_every is not None and val_every <= 0:
            raise ValueError(f"val_every {val_every} must be positive (llm.c crashes on -v 0)")
        every = val_every or max(1, train_steps)
        # val runs at step 0 as well; HellaSwag, generation and checkpoints only after it
        n_val = 1 + count_events(train_steps, every) if train_steps > 0 else 1
        total += n_val * self.val_seconds(model, val_batches, micro_batch)
        if hellaswag:
            total += count_events(train_steps, every) * self.hellaswag_seconds(model, micro_batch)
        if sample_every > 0:
            total += self.generation_seconds(model) * count_events(train_steps, sample_every)
        if checkpoint_every > 0:
            total += self.checkpoint_seconds(model) * count_events(train_steps, checkpoint_every)
        return total

    def dollars(self, seconds: float) -> float:
        """The price of ``seconds`` of this GPU."""
        return seconds / 3600.0 * self.price_per_hour


def count_events(train_steps: int, every: int) -> int:
    """How often llm.c's ``(step > 0 && step % every == 0) || last_step`` fires in a run."""
    if train_steps <= 0:
        return 1
    return train_steps // every + (0 if train_steps % every == 0 else 1)


def events_at(
    step: int,
    last_step: bool,
    *,
    val_every: int,
    hellaswag: bool,
    sample_every: int,
    checkpoint_every: int,
) -> tuple[bool, bool, bool, bool]:
    """(val, hellaswag, generation, checkpoint) at loop iteration ``step``, as llm.c's loop."""
    val = step % val_every == 0 or last_step
    periodic = step > 0 and step % val_every == 0
    hs = hellaswag and (periodic or last_step)
    gen = sample_every > 0 and ((step > 0 and step % sample_every == 0) or last_step)
    ckpt = checkpoint_every > 0 and ((step > 0 and step % checkpoint_every == 0) or last_step)
    return val, hs, gen, ckpt
