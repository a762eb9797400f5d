"""What a benchmark measures about processes and the machine (Linux ``/proc``), with the standard library only.

Child processes of a benchmark import no more than they need, so this module imports neither numpy nor torch:
:func:`peak_rss_mib` of this process, :func:`proc_memory` of a process's resident memory split into anonymous and file-backed pages,
:class:`RssPoller` for its peaks while it runs, :func:`busy_cpu_s` of the whole machine's CPU time, and
:func:`run_measured`, which runs a command in a fresh process and returns all of it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import tempfile
import threading
import time
from typing import Any

from saec.errors import SaecError

MEMORY_KEYS = ("VmRSS", "RssAnon", "RssFile")  # all resident memory, its anonymous and its file-backed parts


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """Bytes of :data:`MEMORY_KEYS` of process ``pid`` (``"self"``: this one) from ``/proc/PID/status``; a key the
    kernel does not report is left out."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in MEMORY_KEYS:
                out[key] = int(value.split()[0]) * 1024  # the kernel reports kB
    return out


class RssPoller(threading.Thread):
    """Peaks of :data:`MEMORY_KEYS` of process ``pid`` (bytes in :attr:`peak`), read every ``interval`` seconds
    until :attr:`done` is set."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = dict.fromkeys(MEMORY_KEYS, 0)
        self.done = threading.Event()

    def run(self) -> None:
        """Poll until :attr:`done` is set."""
        while not self.done.is_set():
            # the process may exit between polls: a vanished or half-written status file is skipped
            with contextlib.suppress(OSError, ValueError, IndexError):
                for key, value in proc_memory(self.pid).items():
                    self.peak[key] = max(self.peak[key], value)
            self.done.wait(self.interval)


def busy_cpu_s() -> float | None:
    """CPU seconds every process on the machine has used since boot (``/proc/stat``), else None."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd: list[str], env: dict[str, str] | None = None, interval: float = 0.05) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process and measure it: wall seconds, peak RSS (``wait4``'s rusage), the peaks of
    :data:`MEMORY_KEYS` polled every ``interval`` seconds (``proc_peak``), its CPU seconds, the CPU seconds
    everything else on the machine used meanwhile (``others_cpu_s``, None off Linux), major page faults, and
    its stdout. A non-zero exit raises :class:`~saec.errors.SaecError` with the end of its stderr."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        busy0 = busy_cpu_s()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        poller = RssPoller(proc.pid, interval)
        poller.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        busy1 = busy_cpu_s()
        poller.done.set()
        poller.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SaecError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{stderr[-3000:]}")
    cpu = ru.ru_utime + ru.ru_stime
    return {"wall_s": wall, "maxrss_bytes": ru.ru_maxrss * 1024, "cpu_s": cpu, "user_s": ru.ru_utime,
            "sys_s": ru.ru_stime, "others_cpu_s": None if busy0 is None or busy1 is None else max(0.0, busy1 - busy0 - cpu),
            "majflt": ru.ru_majflt, "proc_peak": poller.peak, "poll_interval_s": interval, "stdout": stdout}


def last_json_line(stdout: str) -> Any:
    """The JSON value a child process printed last (its result; anything it printed before is ignored)."""
    import json

    lines = stdout.strip().splitlines()
    if not lines:
        raise SaecError("the child process printed nothing; expected a JSON line")
    return json.loads(lines[-1])


__all__ = ["MEMORY_KEYS", "RssPoller", "busy_cpu_s", "last_json_line", "peak_rss_mib", "proc_memory", "run_measured"]
