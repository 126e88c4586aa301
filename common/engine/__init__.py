"""What drives the backends: the registry, the contract, data, the training loop, checkpoints."""
