"""Training: the loop, the loss, optimizers, checkpoints, metrics, config checks."""
