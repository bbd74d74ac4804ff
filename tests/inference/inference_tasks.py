"""Local task files for the inference tests, built from the embedded Shakespeare corpus (no download)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from llada_lightning.data.corpus import iter_embedded_works


def corpus_lines(limit_works: int = 3) -> list[str]:
    """Non-trivial lines (>= 20 characters) of the first works, in order."""
    lines: list[str] = []
    for i, (_, text) in enumerate(iter_embedded_works()):
        if i >= limit_works:
            break
        lines.extend(line.strip() for line in text.splitlines() if len(line.strip()) >= 20)
    return lines


def next_line_task(path: Path, n: int = 8, num_choices: int = 3, seed: int = 0) -> Path:
    """`n` examples: context = a line, choices = its true next line (at a random position) and random other lines."""
    rng = random.Random(seed)
    lines = corpus_lines()
    with path.open("w", encoding="utf-8") as f:
        for _ in range(n):
            i = rng.randrange(len(lines) - 1)
            choices = rng.sample(lines, num_choices - 1)
            gold = rng.randrange(num_choices)
            choices.insert(gold, lines[i + 1])
            f.write(json.dumps({"context": lines[i] + "\n", "choices": choices, "gold": gold}) + "\n")
    return path


def local_mc_task_dir(root: Path, data: Path, name: str = "llada_local_mc") -> Path:
    """A directory holding one lm-eval task YAML `name`: multiple choice over the JSONL `data` (no hub access)."""
    tasks = root / "tasks"
    tasks.mkdir()
    spec = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(root / "hf")},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
    }
    (tasks / f"{name}.yaml").write_text(json.dumps(spec))  # JSON is YAML: no quoting surprises
    return tasks
