"""SIGINT and SIGTERM for the command line: one cancellation path that
lets every cleanup run (spools and partial outputs removed, workers
stopped), and a run that has already committed its output finishes."""
from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from dicompack import output
from dicompack.errors import Terminated


class Signals:
    """SIGINT and SIGTERM become one cancellation path: while a command
    works (``cancellable``) the first one raises ``Terminated`` in the main
    thread, so cleanup runs as for Ctrl-C; outside that, there is nothing to
    clean up and the process just exits.  Later signals are ignored, so they
    cannot cut that cleanup short (SIGKILL still can: the next run sweeps
    what it leaves, see output.sweep_stale)."""

    def __init__(self):
        self.received: int | None = None
        self.armed = False
        # Set once an output is renamed into place (output.on_commit) or the
        # command's work is done: a signal then no longer cancels anything —
        # what is left is cleanup, the remaining volumes of a split and the
        # report — so the run finishes, prints its report and exits 0: a
        # caller must not read "killed, nothing written" when the
        # destination was in fact replaced.
        self.committed = False
        self._pid = os.getpid()
        self._raised: BaseException | None = None
        self._default_unraisable = sys.unraisablehook

    def install(self) -> None:
        self._pid = os.getpid()
        output.on_commit = self._commit
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)
        if hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, self._again)
            sys.unraisablehook = self._unraisable

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return      # a just-forked worker, before it drops this handler: its parent stops it
        if self.received is not None and self._raised is not None:
            return
        if self.committed:
            self.received = signum   # noted, nothing left to cancel: finish the report
            return
        self.received = signum
        self._raised = Terminated(signum) if self.armed else SystemExit(128 + signum)
        raise self._raised

    def _unraisable(self, info) -> None:
        """Python ignores an exception raised where it cannot propagate (an
        at-fork hook of the worker pool, a __del__): it is raised again a
        moment later (SIGALRM), until it lands in ordinary code."""
        if self._raised is not None and info.exc_value is self._raised and os.getpid() == self._pid:
            self._raised = None
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            return
        self._default_unraisable(info)

    def _again(self, signum, frame) -> None:
        if self.received is not None and self._raised is None:
            self._handle(self.received, frame)

    def _commit(self) -> None:
        if os.getpid() == self._pid:
            self.committed = True

    @contextmanager
    def cancellable(self):
        self.armed = True
        try:
            yield
            self.committed = True
        finally:
            self.armed = False

    def hold_until_exit(self) -> None:
        """Block SIGINT/SIGTERM for the last instants of the process: the
        interpreter puts the default handlers back while it shuts down, and a
        signal landing then would end an already finished run by the signal
        (exit -15).  Blocked signals are dropped when the process exits."""
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


SIGNALS = Signals()
