"""Multiple-choice evaluation from a local JSONL task file (each choice scored by its log-likelihood, as eval_llada.py).

One JSON object per line: `{"context": str, "choices": [str, ...], "gold": int}` (blank lines are skipped).
Each choice is scored by log p(choice | context) (`scoring.continuation_loglik`: LLaDA the Monte Carlo lower bound
with `mc_num` draws, seeded per example; ARM exact). Two accuracies are reported:
- `acc`: the choice with the highest summed log-likelihood (unnormalised);
- `acc_norm`: the highest log-likelihood per answer token (normalised by the choice's token count; lm-eval's
  `acc_norm` divides by bytes instead, so the two are not the same number).
Ties go to the first choice.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llada_lightning.config.errors import ConfigError

if TYPE_CHECKING:
    from llada_lightning.inference.loading import LoadedRun

NORMALISATION = "per answer token"


@dataclass(frozen=True)
class Example:
    context: str
    choices: tuple[str, ...]
    gold: int
    line: int  # 1-based line number in the task file


def read_task(path: str | Path) -> list[Example]:
    """Parse and validate a JSONL task file; a ConfigError names the file, the line and the fix."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"--task {path}: no such file; pass a JSONL file of {{context, choices, gold}} objects")
    examples = []
    with p.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if raw.strip():
                examples.append(_parse_line(raw, p, number))
    if not examples:
        raise ConfigError(f"{p}: no examples; write one JSON object per line: {{context, choices, gold}}")
    return examples


def _parse_line(raw: str, path: Path, number: int) -> Example:
    where = f"{path} line {number}"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg}); write one JSON object per line") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object with context, choices, gold; got {type(obj).__name__}")
    missing = [k for k in ("context", "choices", "gold") if k not in obj]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}; each line needs context, choices and gold")
    context, choices, gold = obj["context"], obj["choices"], obj["gold"]
    if not isinstance(context, str):
        raise ConfigError(f"{where}: context must be a string, got {type(context).__name__}")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise ConfigError(f"{where}: choices must be a list of at least 2 non-empty strings")
    if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(choices):
        raise ConfigError(f"{where}: gold must be an integer index into choices (0..{len(choices) - 1}), got {gold!r}")
    return Example(context, tuple(choices), gold, number)


def evaluate_multiple_choice(
    loaded: LoadedRun,
    path: str | Path,
    *,
    mc_num: int = 32,
    seed: int = 0,
    limit: int | None = None,
    mc_batch_size: int = 32,
    max_length: int | None = None,
) -> dict[str, Any]:
    """Accuracy of `loaded` on the task file `path` (the first `limit` examples).

    Returns a JSON-ready dict: `acc`, `acc_norm` (normalisation: per answer token), `num_examples`, how the
    log-likelihood was computed (`estimator`, `mc_num`, `seed`), and per example the choices' summed
    log-likelihoods, token counts, Monte Carlo standard errors and both predictions. `max_length` (at most
    `model.max_seq_len`): contexts are left-truncated so context + choice fit (default: none). Every context +
    choice must fit in `model.max_seq_len`: checked for all examples before any is scored (ConfigError).
    """
    from llada_lightning.inference.scoring import continuation_loglik

    if mc_num < 1:
        raise ConfigError(f"--mc-num {mc_num}: must be >= 1")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be >= 1 (or leave it out for the whole task)")
    if max_length is not None and max_length > loaded.max_seq_len:
        raise ConfigError(
            f"--max-length {max_length} exceeds the model's context (model.max_seq_len={loaded.max_seq_len}); "
            f"pass --max-length {loaded.max_seq_len} or less"
        )
    examples = read_task(path)[:limit]
    encoded = [_encode_example(loaded, path, ex, max_length) for ex in examples]  # every example fits, or fail now
    decoder = loaded.decoder
    rows = []
    for ex, pairs in zip(examples, encoded, strict=True):
        lls, stderrs, lengths = [], [], []
        for choice, (prompt, answer) in zip(ex.choices, pairs, strict=True):
            gen = decoder.likelihood_generator(loaded.device, seed, ex.context, choice)
            ll = continuation_loglik(loaded, prompt, answer, mc_num=mc_num, mc_batch_size=mc_batch_size, generator=gen)
            lls.append(ll.mean)
            stderrs.append(None if math.isnan(ll.stderr) else ll.stderr)
            lengths.append(len(answer))
        pred = _argmax(lls)
        pred_norm = _argmax([ll / n for ll, n in zip(lls, lengths, strict=True)])
        rows.append(
            {
                "line": ex.line,
                "gold": ex.gold,
                "pred": pred,
                "pred_norm": pred_norm,
                "loglik": lls,
                "stderr": stderrs,
                "answer_tokens": lengths,
            }
        )
    n = len(rows)
    exact = decoder.exact
    return {
        "task": str(path),
        "run_dir": str(loaded.run_dir),
        "objective": loaded.objective,
        "model": loaded.cfg.model.name,
        "num_examples": n,
        "acc": sum(r["pred"] == r["gold"] for r in rows) / n,
        "acc_norm": sum(r["pred_norm"] == r["gold"] for r in rows) / n,
        "normalisation": NORMALISATION,
        "estimator": decoder.estimator,
        "mc_num": None if exact else mc_num,
        "seed": None if exact else seed,
        "examples": rows,
    }


def _encode_example(
    loaded: LoadedRun, path: str | Path, ex: Example, max_length: int | None
) -> list[tuple[list[int], list[int]]]:
    """(prompt, answer) ids of each choice, contexts left-truncated to `max_length`; ConfigError naming the line
    when a choice encodes to nothing or context + choice do not fit in `model.max_seq_len`."""
    from llada_lightning.inference.scoring import encode_pair, fit_context

    pairs = []
    for number, choice in enumerate(ex.choices):
        try:
            prompt, answer = encode_pair(loaded, ex.context, choice)
        except ValueError as exc:
            raise ConfigError(f"{path} line {ex.line}: {exc}") from exc
        prompt = fit_context(prompt, answer, max_length)
        _check_fits(loaded.max_seq_len, len(prompt), len(answer), f"{path} line {ex.line} choice {number}")
        pairs.append((prompt, answer))
    return pairs


def _check_fits(max_seq_len: int, prompt_tokens: int, answer_tokens: int, where: str) -> None:
    """ConfigError unless context + choice fit in the model's context; the fix: --max-length, or a shorter choice."""
    total = prompt_tokens + answer_tokens
    if total <= max_seq_len:
        return
    fix = (
        f"pass --max-length {max_seq_len} to left-truncate contexts"
        if answer_tokens < max_seq_len
        else f"the choice alone is {answer_tokens} tokens: shorten it"
    )
    raise ConfigError(
        f"{where}: context {prompt_tokens} + choice {answer_tokens} = {total} tokens exceed the model's context "
        f"(model.max_seq_len={max_seq_len}); {fix}"
    )


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def format_result(result: dict[str, Any]) -> str:
    """The human-readable summary printed by `llada eval`."""
    how = (
        "exact (autoregressive)"
        if result["estimator"] == "exact"
        else f"Monte Carlo lower bound (mc_num={result['mc_num']}, seed={result['seed']})"
    )
    return "\n".join(
        [
            f"task      {result['task']}: {result['num_examples']} examples",
            f"model     {result['objective']} {result['model']} ({result['run_dir']})",
            f"loglik    {how}",
            f"acc       {result['acc']:.4f}  (sum of the choice's log-likelihood, unnormalised)",
            f"acc_norm  {result['acc_norm']:.4f}  (log-likelihood {result['normalisation']})",
        ]
    )
