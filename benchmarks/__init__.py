"""Measurements of nin made from outside the library, through its public API; not part of the installed package.

Each module is a script, run from the repository root as ``python -m benchmarks.<name>`` (``--help`` lists its
options); most append JSON lines to ``benchmarks/results/``, which the documentation and the tests read.
"""
