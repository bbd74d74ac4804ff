"""Sampler and likelihood throughput, and the prompt cache's speed-up and quality cost, on a tiny CPU model.

    python benchmarks/bench_sampling.py            # ~1-2 minutes on 2 CPU cores
    python benchmarks/bench_sampling.py --quick    # a smoke run

A small bidirectional Transformer is first trained for a few hundred steps (LLaDA's loss) on a synthetic
task: periodic sequences (a random pattern of 2 to 8 tokens, repeated), so its predictions are confident and
checkable (`acc` = fraction of generated tokens equal to the true continuation). The exact sampler and the
prompt-cached one (Fast-dLLM prefix cache, `generate(..., prompt_cache=True)`) then run on the same prompts,
greedily; `diff` is the fraction of generated tokens on which they disagree; `work` is the ratio of token
positions run through the model (exact / cached), a speed-up that does not depend on the machine's load.
Times are the best of a few interleaved repeats (other processes may share the CPU).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from llada_lightning.config import ModelConfig
from llada_lightning.likelihood import ar_log_likelihood, log_likelihood
from llada_lightning.models import build_model
from llada_lightning.sampling import generate, generate_ar

CONFIG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=128, d_ff=384, vocab_size=64, max_seq_len=256)


def periodic(batch: int, length: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """Rows x_i = pattern[i mod k] with k ~ U{2..8} and a random pattern."""
    period = torch.randint(2, 9, (batch, 1), generator=generator)
    pattern = torch.randint(0, vocab, (batch, 8), generator=generator)
    return pattern.gather(1, torch.arange(length).expand(batch, -1) % period)


class Counting(torch.nn.Module):
    """Wraps a Transformer and counts the token positions it processes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.positions = model, 0

    def new_kv_cache(self):
        return self.model.new_kv_cache()

    def forward(self, input_ids, attention_mask=None, cache=None):
        self.positions += input_ids.numel()
        return self.model(input_ids, attention_mask, cache=cache)


def train(model: torch.nn.Module, steps: int, seq_len: int, generator: torch.Generator) -> float:
    """LLaDA pretraining loss: t ~ U[0,1), p = (1 - eps) t + eps, sum of masked CE / p over all B*T tokens."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x0 = periodic(32, seq_len, CONFIG.vocab_size, generator)
        p = (1 - 1e-3) * torch.rand(32, 1, generator=generator) + 1e-3
        masked = torch.rand(x0.shape, generator=generator) < p
        logits = model(x0.masked_fill(masked, CONFIG.mask_id))
        ce = F.cross_entropy(logits.flatten(0, 1), x0.flatten(), reduction="none").view_as(x0)
        loss = (ce * masked / p).sum() / x0.numel()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


def timed(*fns, repeats: int = 3):
    """(outputs, best seconds) of each function, after a warm-up, with the repeats interleaved."""
    outs = [fn() for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return outs, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer training steps and settings (smoke run)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    prompt_len, gen_length, batch = 64, 64, 8
    torch.manual_seed(0)
    model = build_model(CONFIG)
    t0 = time.perf_counter()
    final_loss = train(model, 40 if args.quick else args.train_steps, prompt_len + gen_length, g)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"model: {n_params:.2f}M params, trained to loss {final_loss:.3f} in {time.perf_counter() - t0:.1f} s")

    data = periodic(batch, prompt_len + gen_length, CONFIG.vocab_size, g)
    prompts, truth = data[:, :prompt_len], data[:, prompt_len:]
    mask_id = CONFIG.mask_id
    counting = Counting(model)

    def run(block_length: int, steps: int, cache: bool) -> torch.Tensor:
        kwargs = dict(gen_length=gen_length, steps=steps, block_length=block_length, mask_id=mask_id)
        return generate(counting, prompts, prompt_cache=cache, **kwargs)[:, prompt_len:]

    print(f"\nprompt cache: greedy, low_confidence, batch {batch}, prompt {prompt_len}, gen {gen_length}")
    header = ("block", "steps", "exact s", "cached s", "speed-up", "work", "diff", "acc exact", "acc cached")
    print("{:>6} {:>6} {:>8} {:>9} {:>9} {:>6} {:>6} {:>10} {:>11}".format(*header))
    settings = [(64, 64), (16, 64)] if args.quick else [(64, 64), (32, 64), (16, 64), (8, 64), (16, 16)]
    timings = []
    for block_length, steps in settings:
        work = []
        for cache in (False, True):
            counting.positions = 0
            run(block_length, steps, cache)
            work.append(counting.positions)
        (exact, cached), (t_exact, t_cached) = timed(
            lambda b=block_length, s=steps: run(b, s, False), lambda b=block_length, s=steps: run(b, s, True)
        )
        diff = (exact != cached).float().mean().item()
        acc_e, acc_c = (exact == truth).float().mean().item(), (cached == truth).float().mean().item()
        timings.append((block_length, steps, t_exact, t_cached))
        print(
            f"{block_length:>6} {steps:>6} {t_exact:>8.3f} {t_cached:>9.3f} {t_exact / t_cached:>8.2f}x "
            f"{work[0] / work[1]:>5.2f}x {diff:>6.1%} {acc_e:>10.1%} {acc_c:>11.1%}"
        )

    print("\nthroughput (best of 3)")
    print(f"{'what':<50} {'seconds':>8} {'tokens/s':>9} {'seqs/s':>8}")

    def report(what: str, seconds: float, tokens: int, seqs: int) -> None:
        print(f"{what:<50} {seconds:>8.3f} {tokens / seconds:>9.0f} {seqs / seconds:>8.2f}")

    n_tokens = batch * gen_length
    for block_length, steps, t_exact, t_cached in timings:
        report(f"generate, block {block_length}, {steps} steps", t_exact, n_tokens, batch)
        report(f"generate, block {block_length}, {steps} steps, prompt_cache", t_cached, n_tokens, batch)
    kwargs = dict(gen_length=gen_length, steps=16, block_length=16, mask_id=mask_id, generator=g)
    _, (t,) = timed(lambda: generate(model, prompts, temperature=1.0, cfg_scale=1.0, **kwargs))
    report("generate, block 16, 16 steps, T=1, cfg 1.0", t, n_tokens, batch)

    answer_len = 16
    examples = [(data[i, :prompt_len], data[i, prompt_len : prompt_len + answer_len]) for i in range(batch)]
    for mc_num in [32] if args.quick else [32, 128]:
        _, (t,) = timed(
            lambda m=mc_num: [
                log_likelihood(model, p, a, mask_id=mask_id, mc_num=m, batch_size=32, generator=g) for p, a in examples
            ]
        )
        report(f"log_likelihood discrete, mc_num {mc_num}, answer {answer_len}", t, batch * answer_len, batch)

    torch.manual_seed(0)
    arm = build_model(CONFIG, causal=True).eval()  # random init: speed only
    _, (t_on, t_off) = timed(
        lambda: generate_ar(arm, prompts, max_new_tokens=gen_length, temperature=0.0, use_cache=True),
        lambda: generate_ar(arm, prompts, max_new_tokens=gen_length, temperature=0.0, use_cache=False),
    )
    report("generate_ar greedy, KV cache on", t_on, n_tokens, batch)
    report("generate_ar greedy, KV cache off", t_off, n_tokens, batch)
    _, (t,) = timed(lambda: [ar_log_likelihood(arm, data[i, :prompt_len], data[i, prompt_len:]) for i in range(batch)])
    report(f"ar_log_likelihood (exact), answer {gen_length}", t, n_tokens, batch)
    print("\ntokens/s: generated (or scored answer) tokens per second; seqs/s: sequences (examples) per second")


if __name__ == "__main__":
    main()
