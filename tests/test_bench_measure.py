"""saec.bench.measure: a child process's wall time, peak memory and CPU, and this process's memory, from /proc."""

from __future__ import annotations

import resource
import sys

import numpy as np
import pytest

from saec.bench.measure import RssPoller, busy_cpu_s, last_json_line, peak_rss_mib, proc_memory, run_measured
from saec.errors import SaecError


def test_proc_memory_of_this_process_adds_up():
    m = proc_memory()
    assert set(m) == {"VmRSS", "RssAnon", "RssFile"}
    assert 0 < m["RssAnon"] and m["RssAnon"] + m["RssFile"] <= m["VmRSS"]  # (shared memory makes up the rest)
    assert peak_rss_mib() * 1024 == resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_the_poller_sees_memory_this_process_touches():
    import os

    poller = RssPoller(os.getpid(), interval=0.001)
    poller.start()
    before = proc_memory()["RssAnon"]
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, written, so resident
    while poller.peak["RssAnon"] < before + block.nbytes // 2 and poller.is_alive():
        poller.done.wait(0.001)
    poller.done.set()
    poller.join()
    assert poller.peak["RssAnon"] >= before + block.nbytes // 2 and poller.peak["VmRSS"] >= poller.peak["RssAnon"]


def test_run_measured_reports_the_childs_output_memory_and_cpu():
    code = "import json, numpy as np; x = np.ones(48 << 20, dtype=np.uint8); print('noise'); print(json.dumps([int(x.sum())]))"
    busy = busy_cpu_s()
    r = run_measured([sys.executable, "-c", code])
    assert last_json_line(r["stdout"]) == [48 << 20]
    assert r["maxrss_bytes"] >= 48 << 20 and r["proc_peak"]["VmRSS"] <= r["maxrss_bytes"]
    assert 0 < r["cpu_s"] and r["cpu_s"] == pytest.approx(r["user_s"] + r["sys_s"]) and r["wall_s"] > 0
    assert r["others_cpu_s"] >= 0 and busy_cpu_s() >= busy
    with pytest.raises(SaecError, match="exited with 3"):
        run_measured([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(SaecError, match="printed nothing"):
        last_json_line("\n")
