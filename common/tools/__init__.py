"""Tools built on the engine: parity, resources, bench, the variant study, plots."""
