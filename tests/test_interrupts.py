"""Stop (a KeyboardInterrupt, as JupyterLab's Stop button sends) while the course's cluster starts or closes.

Each scenario runs in a fresh Python process, as a fresh kernel would, so that it owns every process and port it
checks: the main thread gets a real SIGINT at a chosen moment, then the script reports what is left.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = r"""
import json, signal, sys, threading, time
import psutil
import distributed
import dml_lesson as dml

ME = psutil.Process()
MAIN = threading.main_thread().ident


def processes():
    "This process's live descendants, but multiprocessing's resource tracker (it lives as long as this one)."
    alive = []
    for proc in ME.children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(proc.cmdline()):
                alive.append(proc)
        except psutil.Error:
            pass
    return alive


def listening():
    "Ports this process and its descendants listen on."
    ports = set()
    for proc in [ME, *processes()]:
        try:
            ports |= {c.laddr.port for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            pass
    return sorted(ports)


def stop_when(ready):
    "Send SIGINT to the main thread as soon as ready() is true."
    def watch():
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        signal.pthread_kill(MAIN, signal.SIGINT)
    threading.Thread(target=watch, daemon=True).start()


phase = sys.argv[1]
if phase == "closing":
    dml.get_client(2)
    close = distributed.LocalCluster.close

    def interrupted_close(self, *args, **kwargs):  # the Stop lands while the cluster closes
        signal.pthread_kill(MAIN, signal.SIGINT)
        time.sleep(0.3)
        return close(self, *args, **kwargs)

    distributed.LocalCluster.close = interrupted_close
    action = dml.close_client
elif phase == "frozen":  # a half-dead cluster: every worker process stopped (SIGSTOP), none answers
    dml.get_client(2)
    for proc in processes():
        proc.suspend()
    action = dml.close_client
else:
    # "scheduler": as soon as the scheduler listens (no worker yet); "workers": as soon as a worker process exists
    stop_when({"scheduler": lambda: listening(), "workers": lambda: processes()}[phase])
    action = lambda: dml.get_client(2)
start = time.monotonic()
try:
    action()
    outcome = "returned"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
seconds = time.monotonic() - start
if phase == "closing":
    distributed.LocalCluster.close = close
left = {"processes": len(processes()), "listening": listening()}
client = dml.get_client(2)
again = {"workers": len(dml.worker_addresses(client)), "processes": len(processes()),
         "dashboard_port": int(dml.dashboard_link(client).split(":")[2].split("/")[0]), "listening": listening()}
dml.close_client()
print(json.dumps({"outcome": outcome, "seconds": seconds, "left": left, "again": again}))
"""


def run_script(phase: str, timeout: float = 240) -> dict:
    """Run SCRIPT in a new process group (all of it is killed if it overruns) and return its report."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, phase], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("phase", ["scheduler", "workers"])
def test_stop_while_the_cluster_starts_leaves_nothing_behind(phase):
    """Stop in the first cell, while the scheduler or the workers start: KeyboardInterrupt, then no worker process
    and no open port is left, and the next get_client() starts one cluster of 2 workers whose dashboard is live."""
    report = run_script(phase)
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["left"] == {"processes": 0, "listening": []}, report
    again = report["again"]
    assert again["workers"] == 2 and again["processes"] == 2, report
    assert again["dashboard_port"] in again["listening"], report


def test_stop_while_the_cluster_closes_still_closes_it():
    """Stop during close_client(): the close is finished (workers gone, ports free), then KeyboardInterrupt."""
    report = run_script("closing")
    assert report["outcome"] == "KeyboardInterrupt", report
    assert report["left"] == {"processes": 0, "listening": []}, report
    assert report["seconds"] < 30, report
    assert report["again"]["workers"] == 2 and report["again"]["processes"] == 2, report


def test_closing_a_cluster_whose_workers_froze_is_bounded():
    """close_client() on a cluster whose worker processes are all stopped (SIGSTOP) returns within seconds and
    leaves no process and no port behind."""
    report = run_script("frozen")
    assert report["outcome"] == "returned", report
    assert report["left"] == {"processes": 0, "listening": []}, report
    assert report["seconds"] < 30, report
