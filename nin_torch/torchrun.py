"""``torchrun`` for ``nin train --workers``: torch's own launcher (``torch.distributed.run``, the same arguments and
the same elastic agent), whose failure report is left to nin's launcher.

torchrun ends a failed job by raising ``ChildFailedError`` out of its ``main``: a traceback and a table of the
failed ranks on stderr.  nin's launcher already names the lost worker in one line, so here the job's failure is
an exit status instead, and the agent's own log is silenced.  Started by hand, ``torchrun`` works unchanged.
"""
import logging
import sys

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run


def main(argv=None) -> int:
    for name in [n for n in logging.Logger.manager.loggerDict if n.startswith("torch.distributed")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the agent's report of the failed worker
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        codes = [failure.exitcode for failure in err.failures.values()]
        return next((c for c in codes if c > 0), 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
