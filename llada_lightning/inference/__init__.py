"""Using trained runs: load a checkpoint and tokenizer, sample, score and evaluate.

- `loading.load_run(run_dir)` -> `LoadedRun` (config, model in eval mode, tokenizer, eos/mask ids, objective);
- `generation.sample_text` / `generate_ids`: the run's own sampler (LLaDA reverse diffusion or ARM decoding);
- `scoring`: log p(continuation | context) (LLaDA Monte Carlo lower bound, ARM exact), greedy checks, rolling windows;
- `multiple_choice.evaluate_multiple_choice`: accuracy on a local JSONL task;
- `lm_eval_adapter`: the lm-evaluation-harness model `llada_lightning` (needs the `eval` extra);
- `cli`: `llada sample` and `llada eval`.

Nothing here is imported by the package at start-up; submodules import torch only when used.
"""
