"""Training stage of edgeage: the loop (CPU, GPU, DDP under torchrun), losses, TOML recipes,
and later QAT and pruning fine-tunes."""
