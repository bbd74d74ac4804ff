"""Using trained runs: load a checkpoint and tokenizer, sample, score and evaluate."""
