"""Framework-free core of nin: the architecture as data, shapes, weights, data, training, CLI."""
