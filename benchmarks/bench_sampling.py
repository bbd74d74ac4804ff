"""Fast-dLLM decoding on a tiny trained LLaDA: forward passes, speed and quality of each mode, plus sampler and
likelihood throughput.

    python benchmarks/bench_sampling.py            # ~3-4 minutes on 2 CPU cores
    python benchmarks/bench_sampling.py --quick    # a smoke run (seconds)

A small bidirectional Transformer is first trained with the package's LLaDA objective (`LLaDAObjective`, linear
schedule) on a synthetic task: periodic sequences (a random pattern of 2 to 8 tokens, repeated), at the lengths
decoded below. Then, for each generation length (block 32, greedy, a batch of prompts of 64 tokens), five modes
decode the same prompts (`llada_lightning.sampling.generate`):

    exact           steps = gen_length (one token per step), no cache
    prefix          the same steps, cache="prefix" (Fast-dLLM prefix cache)
    dual            the same steps, cache="dual" (Fast-dLLM dual cache)
    tau 0.9         threshold=0.9, steps=None (Fast-dLLM parallel decoding), no cache
    tau 0.9 + dual  threshold=0.9 and cache="dual" (Fast-dLLM's fastest setting)

Columns: `passes` = model calls for the batch (`GenerationOutput.forward_passes`); `steps/row` = the mean over rows
of each row's own steps (`row_steps`: what a batch of one would take); `s` = median seconds of the interleaved
repeats (the modes alternate within each repeat, so load from other processes spreads over all of them);
`tok/s` = generated tokens per second; `speed-up` = exact's median time over the mode's; `agree` = fraction of
generated tokens equal to exact decoding's; `loglik/tok` = the model's own log-likelihood of the generated answer
given its prompt, per token (`likelihood.log_likelihood`, a Monte Carlo lower bound, the same draws for every mode);
`acc` = fraction of generated tokens equal to the true periodic continuation.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from llada_lightning.config import ModelConfig
from llada_lightning.config.schema import ObjectiveConfig
from llada_lightning.likelihood import ar_log_likelihood, log_likelihood
from llada_lightning.models import build_model
from llada_lightning.objectives.llada import LLaDAObjective
from llada_lightning.sampling import generate, generate_ar

CONFIG = ModelConfig(n_layers=2, n_heads=4, n_kv_heads=4, d_model=128, d_ff=384, vocab_size=64, max_seq_len=512)
PROMPT_LEN, BLOCK = 64, 32
MODES: dict[str, dict] = {
    "exact": dict(),
    "prefix": dict(cache="prefix"),
    "dual": dict(cache="dual"),
    "tau 0.9": dict(threshold=0.9),
    "tau 0.9 + dual": dict(threshold=0.9, cache="dual"),
}


def periodic(batch: int, length: int, vocab: int, generator: torch.Generator) -> torch.Tensor:
    """Rows x_i = pattern[i mod k] with k ~ U{2..8} and a random pattern."""
    period = torch.randint(2, 9, (batch, 1), generator=generator)
    pattern = torch.randint(0, vocab, (batch, 8), generator=generator)
    return pattern.gather(1, torch.arange(length).expand(batch, -1) % period)


def train(model: torch.nn.Module, steps: int, lengths: list[int], generator: torch.Generator) -> float:
    """`steps` AdamW steps of LLaDA's pretraining loss (the package's objective), each batch at a length drawn
    from `lengths`; returns the last loss."""
    objective = LLaDAObjective(ObjectiveConfig(), CONFIG.mask_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        length = lengths[int(torch.randint(len(lengths), (), generator=generator))]
        loss = objective.training_loss(model, periodic(32, length, CONFIG.vocab_size, generator), generator)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return loss.item()


def interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median seconds of each function over `repeats` rounds, each round running every function once in turn."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def per_token_loglik(model, prompts: torch.Tensor, answers: torch.Tensor, mc_num: int) -> float:
    """Mean over rows of log p(answer | prompt) / answer length (Monte Carlo bound; draws seeded per row)."""
    values = []
    for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        gen = torch.Generator().manual_seed(1000 + i)  # common random numbers: every mode gets the same masks
        ll = log_likelihood(model, prompt, answer, mask_id=CONFIG.mask_id, mc_num=mc_num, batch_size=32, generator=gen)
        values.append(float(ll) / answer.numel())
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few training steps, one length, one repeat (smoke)")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per length (after one untimed run)")
    parser.add_argument("--batch", type=int, default=8, help="prompts decoded together")
    parser.add_argument("--mc-num", type=int, default=32, help="Monte Carlo draws of each likelihood")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is steadier on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen_lengths = [64] if args.quick else [64, 128, 256]
    train_steps, repeats, mc_num = (30, 1, 8) if args.quick else (args.train_steps, args.repeats, args.mc_num)
    batch = 4 if args.quick else args.batch

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(CONFIG)
    t0 = time.perf_counter()
    final_loss = train(model, train_steps, [PROMPT_LEN + n for n in gen_lengths], g)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"model: {n_params:.2f}M params ({CONFIG.n_layers} layers, d={CONFIG.d_model}), {train_steps} steps of the "
        f"LLaDA loss, last loss {final_loss:.3f}, {time.perf_counter() - t0:.0f} s; {torch.get_num_threads()} thread(s)"
    )
    print(f"greedy, low_confidence, batch {batch}, prompt {PROMPT_LEN}, block {BLOCK}, {repeats} timed repeat(s)\n")

    header = ("gen", "mode", "passes", "steps/row", "s", "tok/s", "speed-up", "agree", "loglik/tok", "acc")
    line = "{:>4} {:<15} {:>6} {:>9} {:>7} {:>7} {:>8} {:>7} {:>10} {:>6}"
    print(line.format(*header))
    for gen_length in gen_lengths:
        data = periodic(batch, PROMPT_LEN + gen_length, CONFIG.vocab_size, g)
        prompts, truth = data[:, :PROMPT_LEN], data[:, PROMPT_LEN:]

        def run(options: dict, n: int = gen_length, x: torch.Tensor = prompts):
            steps = None if "threshold" in options else n
            kwargs = dict(gen_length=n, steps=steps, block_length=BLOCK, mask_id=CONFIG.mask_id, return_history=True)
            return generate(model, x, **kwargs, **options)

        outs = {name: run(options) for name, options in MODES.items()}  # untimed: warm-up, outputs, counts
        fns = [lambda o=options: run(o) for options in MODES.values()]
        seconds = dict(zip(MODES, interleaved_medians(fns, repeats), strict=True))
        exact = outs["exact"].sequences[:, PROMPT_LEN:]
        for name, out in outs.items():
            answer = out.sequences[:, PROMPT_LEN:]
            loglik = per_token_loglik(model, prompts, answer, mc_num)
            print(
                line.format(
                    gen_length,
                    name,
                    out.forward_passes,
                    f"{out.row_steps.float().mean().item():.1f}",
                    f"{seconds[name]:.3f}",
                    f"{batch * gen_length / seconds[name]:.0f}",
                    f"{seconds['exact'] / seconds[name]:.2f}x",
                    f"{(answer == exact).float().mean().item():.1%}",
                    f"{loglik:.4f}",
                    f"{(answer == truth).float().mean().item():.1%}",
                )
            )

    other_throughput(model, batch, mc_num, repeats, g)


def other_throughput(model, batch: int, mc_num: int, repeats: int, g: torch.Generator) -> None:
    """The sampler with sampling and CFG, the likelihood estimators and ARM decoding (tokens/s only)."""
    gen_length, answer_len = 64, 16
    data = periodic(batch, PROMPT_LEN + gen_length, CONFIG.vocab_size, g)
    prompts = data[:, :PROMPT_LEN]
    examples = [(data[i, :PROMPT_LEN], data[i, PROMPT_LEN : PROMPT_LEN + answer_len]) for i in range(batch)]
    torch.manual_seed(0)
    arm = build_model(CONFIG, causal=True).eval()  # random init: speed only
    kwargs = dict(gen_length=gen_length, steps=16, block_length=16, mask_id=CONFIG.mask_id, generator=g)
    rows = [
        (
            "generate, block 16, 16 steps, T=1, cfg 1.0",
            batch * gen_length,
            lambda: generate(model, prompts, temperature=1.0, cfg_scale=1.0, **kwargs),
        ),
        (
            f"log_likelihood discrete, mc_num {mc_num}, answer {answer_len}",
            batch * answer_len,
            lambda: [
                log_likelihood(model, p, a, mask_id=CONFIG.mask_id, mc_num=mc_num, batch_size=32, generator=g)
                for p, a in examples
            ],
        ),
        (
            "generate_ar greedy, KV cache on",
            batch * gen_length,
            lambda: generate_ar(arm, prompts, max_new_tokens=gen_length, temperature=0.0, use_cache=True),
        ),
        (
            "generate_ar greedy, KV cache off",
            batch * gen_length,
            lambda: generate_ar(arm, prompts, max_new_tokens=gen_length, temperature=0.0, use_cache=False),
        ),
        (
            f"ar_log_likelihood (exact), answer {gen_length}",
            batch * gen_length,
            lambda: [ar_log_likelihood(arm, data[i, :PROMPT_LEN], data[i, PROMPT_LEN:]) for i in range(batch)],
        ),
    ]
    for _, _, fn in rows:
        fn()  # warm-up
    seconds = interleaved_medians([fn for _, _, fn in rows], repeats)
    print(f"\nother throughput (batch {batch}, median of {repeats}; tokens = generated or scored answer tokens)")
    print(f"{'what':<50} {'seconds':>8} {'tokens/s':>9}")
    for (what, tokens, _), s in zip(rows, seconds, strict=True):
        print(f"{what:<50} {s:>8.3f} {tokens / s:>9.0f}")


if __name__ == "__main__":
    main()
