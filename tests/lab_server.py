"""A private JupyterLab server for the browser tests (tests/test_browser.py).

:class:`LabServer` starts ``jupyter lab`` the way a learner's ``python3 course.py lab`` does, but sealed off from the
machine it runs on: it listens on 127.0.0.1 only, on a free port, with a random token, never opens a browser, and
keeps its root folder, configuration, runtime files, user settings and IPython profile in one temporary folder, so
neither the user's settings nor a stale server can change what the test sees. The notebooks are copied there first:
running them in the browser writes outputs, and the repository's copies must stay as committed.

Kernels inherit ``PYTHONPATH=<this checkout>``, so they import this checkout's ``dml_lesson``, and lose
``MPLBACKEND``, so figures use the inline backend as in a learner's JupyterLab. :meth:`LabServer.stop` shuts the
server down and then kills every process it ever started (kernels and their Dask workers included), even when the
server no longer answers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent

# JupyterLab settings for the test: every cell in the DOM (the default windowing leaves cells that are out of view
# unrendered, so their widgets and prompts could not be checked), the notebook's kernel started without asking
# (else a "Select Kernel" dialog can cover the page) and no news or update pop-up over the page.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none",
                                                                  "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
}
LAB_CONFIG = {
    "ServerApp": {"open_browser": False, "terminals_enabled": False},
    # expose_app_in_browser: window.jupyterapp, as JupyterLab's own UI tests (Galata) use it to open notebooks in
    # the running app instead of reloading the page for each one.
    "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
               "expose_app_in_browser": True},
    "LanguageServerManager": {"autodetect": False},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabServer:
    """``jupyter lab`` on 127.0.0.1 with a token, serving a temporary copy of ``notebooks/``.

    Parameters
    ----------
    workdir : Path
        An empty temporary folder: the server's root, configuration, runtime and settings all live in it.
    log_path : Path
        Where the server's stdout and stderr go (read it when a test fails).
    """

    def __init__(self, workdir: Path, log_path: Path):
        self.workdir, self.log_path = Path(workdir), Path(log_path)
        self.root = self.workdir / "course"
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._seen: dict[int, psutil.Process] = {}

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, workspace: str = "browser-test") -> str:
        """The JupyterLab address of an empty workspace, token included (notebooks are then opened in the app)."""
        return f"{self.base_url}/lab/workspaces/{workspace}?reset&token={self.token}"

    def _prepare(self) -> dict[str, str]:
        shutil.copytree(ROOT / "notebooks", self.root / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        shutil.copy2(ROOT / "GLOSSARY.md", self.root / "GLOSSARY.md")
        names = ("config", "data", "runtime", "settings", "workspaces", "ipython")
        dirs = {name: self.workdir / name for name in names}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        (dirs["config"] / "jupyter_lab_config.json").write_text(json.dumps(LAB_CONFIG), encoding="utf-8")
        for rel, values in LAB_SETTINGS.items():
            path = dirs["settings"] / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            IPYTHONDIR=str(dirs["ipython"]),
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        return env

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until its REST API answers; raise RuntimeError (with its log) if not."""
        env = self._prepare()
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--ServerApp.allow_root=True")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self._remember(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 10.0) -> Any:
        """Call the server's REST API with the token; return the decoded JSON (None for an empty answer)."""
        request = urllib.request.Request(self.base_url + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, n_chars: int = 3000) -> str:
        """The end of the server's log."""
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-n_chars:]
        except OSError:
            return "(no log)"

    def _remember(self, pid: int) -> None:
        try:
            self._seen.setdefault(pid, psutil.Process(pid))
        except psutil.Error:
            pass

    def remember_children(self) -> None:
        """Note every live descendant of the server, so :meth:`stop` can kill it even after it was orphaned."""
        if self.proc is None:
            return
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.Error:
            pass

    def shutdown_notebook(self, path: str, timeout: float = 30.0) -> Future[list[str]]:
        """Close the sessions of notebook ``path`` (shutting their kernels down) through the REST API at once, and
        wait for the kernels' processes (Dask workers included) in a thread.

        Other notebooks' kernels are left alone, so several notebooks can be checked at the same time, and the
        next one can open while this kernel winds down (about 2 s). The future's result: the command lines of
        processes still alive after ``timeout`` s (they are then killed).
        """
        sessions = [s for s in self.api("GET", "/api/sessions") if s.get("path") == path]
        procs = [p for s in sessions for p in self._kernel_processes(s["kernel"]["id"])]
        for session in sessions:
            try:
                self.api("DELETE", f"/api/sessions/{session['id']}", timeout=timeout)
            except (OSError, urllib.error.URLError):
                pass  # the kill below still ends its processes
        future: Future[list[str]] = Future()
        thread = threading.Thread(target=lambda: future.set_result(_wait_gone(procs, timeout)), daemon=True)
        thread.start()
        return future

    def _kernel_processes(self, kernel_id: str) -> list[psutil.Process]:
        """The kernel's process (its command line names its connection file) and everything it started."""
        self.remember_children()
        found = []
        for proc in list(self._seen.values()):
            try:
                if kernel_id in " ".join(proc.cmdline()):
                    found += [proc, *proc.children(recursive=True)]
            except psutil.Error:
                pass
        return found

    def stop(self, timeout: float = 20.0) -> list[str]:
        """Stop the server, then kill whatever it started that is still alive; return those command lines."""
        self.remember_children()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: jupyter server shuts its kernels down, then exits
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        leftovers = _wait_gone(list(self._seen.values()), 5.0)
        if self._log is not None:
            self._log.close()
            self._log = None
        return leftovers


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[str]:
    """Wait up to ``timeout`` s for ``procs`` to end, kill the rest; return the command lines of those killed."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if _alive(p)]
    killed = []
    for p in alive:
        try:
            killed.append(" ".join(p.cmdline())[:120])
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return killed
