"""How long a server lives: never longer than whoever started it, and never twice on one port.

Every launcher (``make serve``, ``make up``, the notebooks' ``start_server``, the gateway) starts
MLServer in a session of its own, so that the server and its inference workers can be stopped
together; but the terminal's signals then no longer reach it. The pieces here close that gap:

* :func:`stop_on_signals` turns SIGTERM and SIGHUP into an exception the launcher's ``finally``
  handles, as Ctrl-C is KeyboardInterrupt;
* :func:`end_with_parent` (Linux) makes the kernel end the server when its launcher dies outright;
* :func:`end_when_gone` ends a server when some other process (a notebook's Jupyter server) ends;
* :func:`lock_ports` stops a second launcher on the same ports, even one started at the same instant;
* :func:`command_line` lets a pid be checked before it is signalled.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path


class PortTaken(RuntimeError):
    """Another workshop server holds one of the ports."""


PORT_LOCKS = Path(tempfile.gettempdir())
"""Where the per-port lock files live. ``port_in_use`` alone cannot stop two launchers started at
the same instant (both see the ports free, and gRPC binds with SO_REUSEPORT, so the loser even
shares the gRPC port); an exclusive ``flock`` per port can. The server process inherits the locks
and holds them as long as it lives, also after a ``start`` launcher has exited."""


def lock_ports(ports: list[int]) -> list[int]:
    """Take an exclusive lock for each port, or raise :class:`PortTaken` naming the taken one."""
    fds: list[int] = []
    for port in ports:
        fd = os.open(PORT_LOCKS / f"tunesmith-port-{port}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        fds.append(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            for held in fds:
                os.close(held)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise PortTaken(
                f"port {port} is taken by another workshop server that is starting or running: stop it "
                f"(`make stop`) or choose other ports, e.g. `make serve HTTP_PORT=9080 GRPC_PORT=9081 "
                f"METRICS_PORT=9082`"
            ) from None
    return fds


def end_with_parent() -> None:
    """In the child, before exec: ask Linux to send SIGTERM when the launching thread ends.

    This is what keeps a server from outliving a launcher that is killed outright (SIGKILL, an
    out-of-memory kill), where no signal handler of the launcher's can run. Linux only
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere the launcher's signal handlers are the only guard.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher died before prctl took effect
        os._exit(1)


END_WITH_PID = "TUNESMITH_END_WITH_PID"
"""Environment variable naming a process whose end ends the server (see :func:`end_when_gone`)."""


def end_when_gone(pid: int | None = None, interval: float = 1.0) -> None:
    """In the server process: end it (SIGTERM to itself) once process ``pid`` has ended.

    For a server that must outlive its launcher but not the program around it: a notebook's server
    is reused by the next notebook's kernel, yet must not outlive the Jupyter server (or the test
    run) that started those kernels. ``pid`` defaults to :data:`END_WITH_PID` from the environment;
    without one this does nothing.
    """
    if pid is None:
        value = os.environ.get(END_WITH_PID, "")
        if not value.isdigit():
            return
        pid = int(value)

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:
                pass

    threading.Thread(target=watch, name=f"end-with-{pid}", daemon=True).start()


def command_line(pid: int) -> str:
    """The command line of process ``pid`` ("" if there is none), to check a pid before signalling it."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return ""
    except OSError:
        return ""
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip()


class Stopped(Exception):
    """Raised in the main thread by SIGTERM or SIGHUP, so ``finally`` blocks stop what was started."""


def stop_on_signals() -> None:
    """Turn SIGTERM and SIGHUP (a closed terminal) into :class:`Stopped`, as Ctrl-C is KeyboardInterrupt.

    A launcher whose server runs in a session of its own must forward these itself: the terminal
    does not deliver them to that session, so without this the server would keep running and keep
    its ports after the launcher is gone.
    """

    def handler(signum, frame):
        for ignored in (signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the clean-up short
            signal.signal(ignored, signal.SIG_IGN)
        raise Stopped(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)
