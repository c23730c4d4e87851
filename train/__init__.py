"""Training stage of edgeage: the loop (CPU, GPU, DDP under torchrun) in small steps, losses,
TOML recipes, the QAT fine-tune and pruning. Imports the core only."""
