"""`python -m llada_lightning.inference.lm_eval_cli ARGS...`: lm-eval's own command line (`lm_eval ARGS...`) with
the model `llada_lightning` registered, e.g.

    python -m llada_lightning.inference.lm_eval_cli --model llada_lightning \\
        --model_args run_dir=runs/x,mc_num=64 --tasks hellaswag

lm-evaluation-harness (0.4.x, lm_eval/api/registry.py `get_model`) finds a `--model` only in its own
`lm_eval.models.MODEL_MAPPING` or among the classes that modules imported so far registered with `register_model`;
it reads no plugin entry points and its `--include_path` adds tasks, not models. A plain `lm_eval --model
llada_lightning` therefore cannot know this package: this wrapper imports the adapter, then runs the harness's CLI
unchanged. A bad run directory or model arg is one line (`llada: config error: ...`, exit 2), not a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from llada_lightning.config.errors import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    """Run lm-eval's command line on `argv` (default: `sys.argv[1:]`) with `llada_lightning` registered."""
    try:
        from lm_eval.__main__ import cli_evaluate

        import llada_lightning.inference.lm_eval_adapter  # noqa: F401  (registers the model)
    except ImportError as exc:
        print(f"llada: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        cli_evaluate()
    except ConfigError as exc:
        print(f"llada: config error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
