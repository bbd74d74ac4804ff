"""Using trained runs: load a checkpoint and tokenizer, sample, score and evaluate.

- `loading.load_run(run_dir)` -> `LoadedRun` (config, model in eval mode, tokenizer, eos/mask ids, objective, and
  the run's `decoder`);
- `decoders`: the only place where LLaDA and the ARM differ here: `decoder_for(objective)` picks `DiffusionDecoder`
  or `AutoregressiveDecoder` from the objective registry; everything below calls `loaded.decoder`;
- `generation.sample_text` / `generate_ids`: the run's own sampler (LLaDA reverse diffusion or ARM decoding);
- `scoring`: log p(continuation | context) (LLaDA Monte Carlo lower bound, ARM exact), greedy checks, rolling windows;
- `multiple_choice.evaluate_multiple_choice`: accuracy on a local JSONL task;
- `lm_eval_adapter`: the lm-evaluation-harness model `llada_lightning` (needs the `eval` extra);
- `lm_eval_cli`: `python -m llada_lightning.inference.lm_eval_cli ...`, lm-eval's command line with that model;
- `cli`: `llada sample` and `llada eval`.

Nothing here is imported by the package at start-up; submodules import torch only when used.
"""
