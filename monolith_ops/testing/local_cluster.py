# Copyright 2026 The monolith_ops Authors.
# SPDX-License-Identifier: Apache-2.0
"""A local parameter-server cluster of processes, for examples and tests.

A helper in the spirit of ``tf.test.create_local_cluster``, but with one
process per task: ``examples/recsys_demo.py`` and
``tests/test_barrier_cluster.py`` (with ``tests/cluster_worker.py``) use it.
It does not import TensorFlow.

* ``LocalCluster`` picks free ports on 127.0.0.1 for 1 ps, 1 chief and N
  workers (``spec``), starts each task as a process in a process group of its
  own (``start_task``), and kills every group when it is closed, however the
  run ends.
* ``task_env`` is an environment in which a task imports the same
  ``monolith_ops`` as the launching process, on CPU.
* ``start_watchdog`` ends a task process at a hard deadline of its own, so that
  nothing outlives a launcher that died.
* ``write_json`` (atomic), ``read_json``, ``append_jsonl``, ``read_jsonl`` and
  ``wait_for``: how the tasks and the launcher exchange results and markers
  through files in a shared folder.

It is not part of the supported API of the ops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable

__all__ = [
    "LocalCluster",
    "append_jsonl",
    "free_ports",
    "read_json",
    "read_jsonl",
    "start_watchdog",
    "task_env",
    "wait_for",
    "write_json",
]

HOST = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_json(path: str, obj: Any, indent: int | None = None) -> None:
    """Writes `obj` as JSON to `path` atomically (a reader sees all or none)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)
    os.replace(tmp, path)


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def append_jsonl(path: str, obj: Any) -> None:
    """Appends `obj` as one JSON line to `path`, flushed."""
    with open(path, "a") as f:
        f.write(json.dumps(obj) + "\n")
        f.flush()


def read_jsonl(path: str) -> list[Any]:
    """The objects of a JSON-lines file; [] when it does not exist."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float, poll: float = 0.05) -> None:
    """Waits until `predicate()` is true; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


def start_watchdog(deadline: float, who: str) -> None:
    """Ends this process (exit code 3) at `deadline`, in epoch seconds, whatever
    it is doing."""

    def watch():
        time.sleep(max(0.0, deadline - time.time()))
        sys.stderr.write(f"{who}: hard deadline reached, exiting\n")
        sys.stderr.flush()
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()


def task_env(**extra: str) -> dict[str, str]:
    """This process' environment for a task: CPU only, TensorFlow's C++ logs
    quiet, output unbuffered, and PYTHONPATH leading first to the
    ``monolith_ops`` this process imported (installed or a source tree)."""
    here = os.path.abspath(__file__)  # <parent>/monolith_ops/testing/local_cluster.py
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    path = [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(
        os.environ,
        CUDA_VISIBLE_DEVICES="",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(path),
        **extra,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the process group `proc` leads, also when `proc` itself has
    exited: what it started lives on in the group (whose id no new group
    can take while any member is alive)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalCluster:
    """The processes of one local cluster: 1 ps, 1 chief and `num_workers`
    workers on free ports of 127.0.0.1.

    Each task started is a process in a new session (its own process group),
    whose output goes to ``<workdir>/<name>.log``. ``close()`` (also on leaving
    a ``with`` block) kills every group with SIGKILL and reaps the processes.
    """

    def __init__(self, workdir: str, num_workers: int) -> None:
        self.workdir = str(workdir)
        ports = free_ports(2 + num_workers)
        self.spec: dict[str, list[str]] = {
            "ps": [f"{HOST}:{ports[0]}"],
            "chief": [f"{HOST}:{ports[1]}"],
            "worker": [f"{HOST}:{p}" for p in ports[2:]],
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self._files: list[Any] = []
        self._relays: dict[str, threading.Thread] = {}
        self._stopped: set[str] = set()

    def path(self, name: str) -> str:
        """`name` inside the work folder."""
        return os.path.join(self.workdir, name)

    def start_task(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        relay_stdout: Callable[[str], None] | None = None,
    ) -> subprocess.Popen:
        """Starts task `name` running `argv` in a process group of its own.

        Its stdout and stderr go to ``<name>.log``; with `relay_stdout`, its
        stdout instead goes line by line to ``relay_stdout(line)`` (from a
        thread) and only its stderr to the log.
        """
        if name in self.procs:
            raise ValueError(f"start_task: a task named {name!r} was started already")
        log = open(self.path(name + ".log"), "w")
        self._files.append(log)
        piped = relay_stdout is not None
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE if piped else log,
            stderr=log if piped else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=task_env() if env is None else env,
            cwd=cwd,
            start_new_session=True,
            text=piped,
            bufsize=1 if piped else -1,
        )
        self.procs[name] = proc
        if piped:
            relay = threading.Thread(target=self._relay, args=(proc, relay_stdout), daemon=True)
            relay.start()
            self._relays[name] = relay
        return proc

    @staticmethod
    def _relay(proc: subprocess.Popen, write: Callable[[str], None]) -> None:
        for line in proc.stdout:
            write(line)

    def join_relays(self, timeout: float, names: Iterable[str] | None = None) -> None:
        """Waits up to `timeout` s for the relay of each task (of `names`,
        default all) whose stdout is relayed to reach its end."""
        for name in self._relays if names is None else names:
            if name in self._relays:
                self._relays[name].join(timeout=timeout)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The last `chars` characters of task `name`'s log."""
        try:
            with open(self.path(name + ".log")) as f:
                return f.read()[-chars:]
        except OSError:
            return "<no log>"

    def exited(self, names: Iterable[str] | None = None) -> dict[str, int]:
        """{name: exit code} of the tasks (of `names`, default all) that exited."""
        names = list(self.procs) if names is None else names
        return {n: self.procs[n].poll() for n in names if self.procs[n].poll() is not None}

    def alive(self) -> list[str]:
        """The names of the tasks still running."""
        return [n for n, p in self.procs.items() if p.poll() is None]

    def signal(self, name: str, sig: int) -> None:
        """Sends `sig` to task `name`'s process group. A group stopped with
        SIGSTOP is continued by ``close()`` before it is killed."""
        os.killpg(self.procs[name].pid, sig)
        if sig == signal.SIGSTOP:
            self._stopped.add(name)
        elif sig == signal.SIGCONT:
            self._stopped.discard(name)

    def kill(self, name: str, timeout: float = 30.0) -> None:
        """Kills task `name`'s process group and reaps it (waiting up to `timeout` s)."""
        proc = self.procs[name]
        _kill_group(proc)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        relay = self._relays.get(name)
        if relay is not None:  # its pipe ends with the group: close it once read
            relay.join(timeout=5.0)
            if not relay.is_alive():
                proc.stdout.close()

    def close(self) -> None:
        """Kills every task's process group, reaps them and closes the logs."""
        for name in sorted(self._stopped):  # let it run, so that nothing waits on it
            try:
                os.killpg(self.procs[name].pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self._stopped.clear()
        for proc in self.procs.values():
            _kill_group(proc)
        for name in self.procs:
            self.kill(name)
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
