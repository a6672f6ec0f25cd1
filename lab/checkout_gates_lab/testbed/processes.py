"""Child processes of the testbed: start, wait for readiness, stop the whole process group.

Every process runs in its own session (process group) with its output in a log file.
Processes still alive when the interpreter exits are killed by an atexit hook; on Linux
they also get SIGKILL from the kernel if the parent dies without running it (SIGTERM,
SIGKILL, a crash), so an aborted test run leaves no etcd or kube-apiserver behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType


class TestbedError(RuntimeError):
    """A testbed component failed to start or misbehaved."""

    __test__ = False  # not a pytest test class


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on host that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_LIVE: set[ManagedProcess] = set()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _preexec() -> Callable[[], None] | None:
    # PDEATHSIG fires when the forking *thread* exits: only use it from the main thread.
    if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread():
        return _die_with_parent
    return None


class ManagedProcess:
    """One child process in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str | Path],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._env = dict(os.environ) | dict(env or {})
        self._cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                start_new_session=True,
                preexec_fn=_preexec(),  # noqa: PLW1509 - only a prctl() call, no locks
            )
        _LIVE.add(self)
        return self

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited within timeout."""
        popen, self._popen = self._popen, None
        _LIVE.discard(self)
        if popen is None:
            return
        pgid = popen.pid  # start_new_session: the child leads its own group
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                popen.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while members of its group live on.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.2,
) -> None:
    """Poll check() until it returns True; exceptions count as 'not yet'.

    Raises TestbedError after timeout, or at once if process has exited, with the
    process's log tail in the message.
    """
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if check():
                return
        except Exception as exc:  # readiness probes fail in many ways while a server starts
            last_error = f"{type(exc).__name__}: {exc}"
        if process is not None and not process.running:
            raise TestbedError(
                f"{process.name} exited with code {process.returncode} while waiting for {what}\n"
                f"--- {process.log_path} ---\n{process.log_tail()}"
            )
        if time.monotonic() >= deadline:
            tail = f"\n--- {process.log_path} ---\n{process.log_tail()}" if process else ""
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what} ({last_error}){tail}")
        time.sleep(interval)


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        proc.stop(timeout=3.0)
