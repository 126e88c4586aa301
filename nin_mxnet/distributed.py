"""Data-parallel NiN in MXNet: not available in this release; every entry point says so in one line.

The engine would be MXNet's ``dist_sync`` kvstore (ps-lite: a scheduler, servers and workers, started by
``mxnet/tools/launch.py``).  Two defects of MXNet 1.9.1, the last release, stand in the way and are not solved
here yet: its launcher (``dmlc_tracker``) stops on Python 3.9 and later (``Thread.isAlive`` was removed), and its
parameter server leaves a flag (``multi_precision_``) uninitialised, so that what the servers send back can be
garbage (measured: weights 1e18 apart after a resumed two-worker run) or float64 rounded to float32.  Training
with MXNet in one process is unaffected.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from common.engine import distributed as D

ENGINE = "MXNet kvstore dist_sync (ps-lite): not available in this release"
LAUNCHER = "mxnet/tools/launch.py (not usable with MXNet 1.9.1 on Python >= 3.9)"
AVAILABLE = False
WHY = ("expected a backend with data-parallel training (torch, tf or jax), got mxnet: MXNet 1.9.1's launcher "
       "fails on Python >= 3.9 and its parameter server returns uninitialised values; train MXNet with one worker")


def environment_world() -> Optional[D.World]:
    """None: no MXNet launcher variables are read (a process started as an MXNet worker is refused in ``join``)."""
    import os

    if os.environ.get("DMLC_ROLE"):
        raise ValueError(WHY)
    return None


def worker_environment(workers: int, rank: int, port: int) -> Dict[str, str]:
    raise ValueError(WHY)


def launch_plan(workers: int, worker_argv: List[str], threads: int, port: Optional[int]) -> list:
    raise ValueError(WHY)


def join(world: D.World):
    raise ValueError(WHY)


def sgd_steps(group, model, batches, lr: float):
    raise ValueError(WHY)
