"""A test run killed outright (SIGKILL: `timeout -s KILL`, CI's over-time kill) leaves no process and no
temporary folder behind (tests/processes.py).

Real processes throughout: a child pytest session with the Prefect test harness (whose server Prefect starts)
and a `prefect server start` of its own, killed with SIGKILL; and a child that leaves what only the next
session's sweep can end (its reaper killed too)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests import processes
from tests.processes import popen_owned, run_processes, start_time

REPO = Path(__file__).resolve().parents[2]
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]

# Runs in a child pytest session with the suite's conftest: the server starts while the harness starts.
CHILD_SESSION = """
import json, os, time
import pytest
from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL
from tests.torture.procs import PrefectServer

@pytest.fixture(scope="session")
def own_server():
    server = PrefectServer()
    yield server
    server.close()

def test_hold_the_servers(own_server, prefect_harness):
    own_server.wait_ready()
    ready = {"owner": os.environ["ZS_TEST_OWNER"], "folders": [os.environ["PREFECT_HOME"], own_server.home],
             "harness_database": PREFECT_SERVER_DATABASE_CONNECTION_URL.value()}
    with open(os.environ["HYGIENE_READY"] + ".part", "w") as out:
        json.dump(ready, out)
    os.replace(os.environ["HYGIENE_READY"] + ".part", os.environ["HYGIENE_READY"])
    time.sleep(600)
"""

# A child whose reaper is killed with it: a child with the parent-death signal, one started as Prefect starts
# its harness server (no such signal, a session of its own) and one that names the folder only by its
# working directory (no owner tag in its environment).
CHILD_SCRIPT = """
import json, os, subprocess, sys, time
from tests import processes
folder = processes.owned_temp_dir("zonesync-hygiene-")
sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
owned = processes.popen_owned(sleep, start_new_session=True)
orphan = subprocess.Popen(sleep, start_new_session=True)
named = subprocess.Popen(sleep, cwd=folder, env={"PATH": os.environ.get("PATH", "")})
ready = {"owner": os.environ["ZS_TEST_OWNER"], "folder": folder, "owned": owned.pid, "orphan": orphan.pid,
         "named": named.pid}
print(json.dumps(ready), flush=True)
time.sleep(600)
"""


def owner_of(ready: dict[str, object]) -> processes.Owner:
    pid, start = str(ready["owner"]).split(":")
    return int(pid), int(start)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    return start_time(pid) is not None


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_session_leaves_no_server_and_no_prefect_home(tmp_path: Path) -> None:
    """SIGKILL of a pytest session running the harness and a Prefect server: within seconds none of its processes
    runs (the server by its parent-death signal, the harness's server and the rest by the session's reaper) and
    its Prefect homes are gone; the next session's sweep finds nothing of it."""
    (tmp_path / "test_child_session.py").write_text(CHILD_SESSION)
    ready_file, log = tmp_path / "ready.json", tmp_path / "child.log"
    env = os.environ | {"HYGIENE_READY": str(ready_file), "PYTHONPATH": str(REPO)}
    with log.open("wb") as output:
        child = popen_owned(
            [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "tests.conftest",
             str(tmp_path / "test_child_session.py")],
            cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        started = eventually(lambda: ready_file.exists() or child.poll() is not None, 90)
        assert started and child.poll() is None, f"the child session did not get ready:\n{log.read_text()[-3000:]}"
        ready = json.loads(ready_file.read_text())
        owner, folders = owner_of(ready), ready["folders"]
        assert owner[0] == child.pid
        home = folders[0]
        assert ready["harness_database"].startswith(f"sqlite+aiosqlite:///{home}/"), "the harness's folder is not in it"
        commands = [command_line(pid) for pid in run_processes(owner, folders)]
        assert any("uvicorn" in c and "prefect.server.api.server:create_app" in c for c in commands), commands
        assert any("prefect server start" in c for c in commands), commands
        assert any("processes.py reap" in c for c in commands), commands
        assert all(Path(folder).is_dir() for folder in folders)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)

    assert eventually(lambda: not run_processes(owner, folders), 20), [
        command_line(pid) for pid in run_processes(owner, folders)
    ]
    assert eventually(lambda: not any(Path(folder).exists() for folder in folders), 10), folders
    swept = processes.sweep()
    assert not set(swept.removed) & set(folders)


def test_the_session_start_sweep_ends_what_a_killed_run_left_and_nothing_else(tmp_path: Path) -> None:
    """With its reaper killed too (so only the next session's sweep can act): the child started with the
    parent-death signal dies with its parent; the sweep kills the other two, by their owner tag and by the
    folder they name, and removes the folder. While the run was alive the sweep touched none of it, and it
    never touches a process that names no owner and no folder of ours."""
    unrelated = subprocess.Popen(SLEEP, env={"PATH": os.environ.get("PATH", "")}, start_new_session=True)
    child = popen_owned([sys.executable, "-c", CHILD_SCRIPT], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline())
        owner, folder = owner_of(ready), ready["folder"]
        children = {ready["owned"], ready["orphan"], ready["named"]}
        (reaper,) = (pid for pid in run_processes(owner) if "processes.py reap" in command_line(pid))

        alive_run = processes.sweep()
        assert not set(alive_run.killed) & (children | {child.pid, reaper}), "a live run's process was killed"
        assert Path(folder).is_dir()

        os.kill(reaper, signal.SIGKILL)
        assert eventually(lambda: not running(reaper), 10)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert eventually(lambda: not running(ready["owned"]), 10), "the parent-death signal did not end it"
        assert running(ready["orphan"]) and running(ready["named"]) and Path(folder).is_dir()

        swept = processes.sweep()
        assert {ready["orphan"], ready["named"]} <= set(swept.killed), swept
        assert folder in swept.removed and not Path(folder).exists()
        assert unrelated.pid not in swept.killed and unrelated.poll() is None
        assert eventually(lambda: not run_processes(owner, [folder]), 10)
    finally:
        for process in (child, unrelated):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()


def test_a_folder_is_judged_by_its_marker_and_never_when_in_doubt(tmp_path: Path) -> None:
    """Gone: another process given a live pid (its start time differs), a marker from an earlier boot. Kept: this
    live process's folder (also with a marker of an older form), another pid namespace's, a folder without a
    marker (a day old at the earliest), a folder of someone else's name. A dry run: nothing is touched."""
    me = processes.this_process()
    marker = {"pid": me[0], "start": me[1], "boot": processes._boot_id(), "pid_namespace": processes._pid_namespace()}
    folders = {
        "zonesync-live": marker,
        "zonesync-older-form": {"pid": me[0], "start": me[1]},
        "zonesync-pid-reused": marker | {"start": me[1] + 1},
        "torture-earlier-boot": marker | {"boot": "an earlier boot"},
        "zonesync-other-namespace": marker | {"start": me[1] + 1, "pid_namespace": "pid:[1]"},
        "zonesync-prefect-home-unmarked": None,
        "someone-elses": marker | {"start": me[1] + 1},
    }
    for name, content in folders.items():
        (tmp_path / name).mkdir()
        if content is not None:
            (tmp_path / name / processes.MARKER).write_text(json.dumps(content))

    swept = processes.sweep(where=str(tmp_path), dry_run=True)
    assert sorted(Path(f).name for f in swept.removed) == ["torture-earlier-boot", "zonesync-pid-reused"]
    assert all((tmp_path / name).is_dir() for name in folders)
