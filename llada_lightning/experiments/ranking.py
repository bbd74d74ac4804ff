"""The likelihood variant: rank every candidate answer of a question by log p(" name." | prompt).

Berglund et al. 2023 (Exp. 1) test the reversal curse by likelihood too: after "A is B" the correct A is
no more likely than a random name given the reversed prompt. Here each question's candidates are the answers of
all forward-only pairs in the same direction (chance = 1 / n_test); the ARM's log-likelihood is exact, LLaDA's the
Monte Carlo lower bound of Nie et al. 2025 Eq. 6 (likelihood.py, `mc_num` draws seeded per request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llada_lightning.experiments.facts import FactSet, prompt
from llada_lightning.experiments.scoring import questions

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun

MC_NUM = 16  # LLaDA draws per likelihood (LLaDA uses 128; 16 ranked as 64 did on a full-mode run, 4x cheaper)


def loglik(loaded: LoadedRun, context: str, answer: str, mc_num: int = MC_NUM) -> float:
    """log p(answer | EOS + context) in nats (the decoder's estimator: exact for the ARM, MC bound for LLaDA)."""
    import torch

    ids = torch.tensor([loaded.eos_id, *loaded.encode(context)], dtype=torch.long, device=loaded.device)
    ans = torch.tensor(loaded.encode(answer), dtype=torch.long, device=loaded.device)
    gen = loaded.decoder.likelihood_generator(loaded.device, 0, context, answer)
    value = loaded.decoder.loglikelihood(
        loaded.model, ids, ans, mc_num=mc_num, mc_batch_size=mc_num, cfg_scale=0.0, generator=gen
    )
    return float(value)


def rank_accuracy(loaded: LoadedRun, facts: FactSet, mc_num: int = MC_NUM) -> dict[str, dict[str, Any]]:
    """{"test/forward": {"rank_acc", "correct", "n", "mean_rank"}, "test/reverse": ...}: how often the true answer
    has the highest log-likelihood among the candidates (rank 1 = best; a tie counts against the true answer)."""
    out: dict[str, dict[str, Any]] = {}
    for direction in ("forward", "reverse"):
        qs = questions(facts, "test", direction)
        candidates = [expected for _, expected in qs]
        ranks = []
        for name, expected in qs:
            scores = [loglik(loaded, prompt(name), f" {c}.", mc_num) for c in candidates]
            i = candidates.index(expected)
            ranks.append(1 + sum(s >= scores[i] for j, s in enumerate(scores) if j != i))
        correct = sum(r == 1 for r in ranks)
        out[f"test/{direction}"] = {
            "rank_acc": correct / len(ranks),
            "correct": correct,
            "n": len(ranks),
            "mean_rank": sum(ranks) / len(ranks),
            "chance": 1 / len(candidates),
        }
    return out
