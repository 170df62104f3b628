"""Processes and temporary folders the tests start, tied to the process that started them.

A run stopped in any way (Ctrl-C, pytest-timeout, `timeout -s KILL`, CI's over-time kill) must leave no server,
worker, cluster or temporary folder behind. Three pieces see to it:

- `popen_owned` / `run_owned` start a child that the kernel SIGKILLs when this process dies (Linux
  `prctl(PR_SET_PDEATHSIG)`, set in the child between fork and exec; a child in a session of its own gets it too).
  The signal fires when the *thread* that forked the child ends, so it is set only when forking from the main
  thread (from another thread the reaper covers the child). It reaches the direct child only: what that child
  starts (the server of Prefect's test harness, a worker's flow runs, a postmaster that pg_ctl daemonises) is
  the reaper's.
- `owned_temp_dir` makes a temporary folder holding a marker that names its owner (pid and start time, as a pid
  alone may be reused; the machine's boot and the pid namespace, as a /tmp may outlive a boot or be shared
  between containers: a marker of another namespace is never judged). The owner's first folder starts its
  reaper, a small process in a session of its own that waits for the owner to end (end of file on a pipe only
  the owner holds) and then sweeps for it; and it sets OWNER_ENV (`pid:start`) in the owner's environment,
  which every process started from it inherits (the tests' environment filters keep it: it has no ZONESYNC_ or
  PREFECT_ prefix).
- `sweep` SIGKILLs every process of an owner that is gone, one whose environment carries the owner's OWNER_ENV or
  whose environment, command line or working directory names one of the owner's folders, then removes those
  folders. The reaper sweeps for its owner; each session start (tests/conftest.py) sweeps for every owner that is
  gone, for when even the reaper could not run. A live owner's processes and folders are never touched, and
  neither is any process that names no owner and no folder of ours.

This module is also the reaper's program (`python -I -S tests/processes.py reap PID START TMPDIR`): standard library
only, nothing imported from the project.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OWNER_ENV = "ZS_TEST_OWNER"
MARKER = ".zonesync-test-owner"
PREFIXES = ("zonesync-", "torture-")  # every folder `owned_temp_dir` makes starts with one of these
# Folders of runs from before the markers (or whose marker was never written): removed once a day old and named
# by no process. Their processes, if any, are left alone: nothing proves they are ours.
UNMARKED_PREFIXES = (
    "zonesync-prefect-home-",
    "zonesync-mariadb-tls-",
    "torture-prefect-",
    "torture-session-",
    "torture-postgresql-",
    "torture-mariadb-",
)
UNMARKED_AGE = 24 * 3600.0
PR_SET_PDEATHSIG = 1

Owner = tuple[int, int]  # (pid, start time in clock ticks after boot)


def start_time(pid: int) -> int | None:
    """When a process started (clock ticks after boot); None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name (which may hold spaces): state is first
    return None if fields[0] in ("Z", "X") else int(fields[19])


def this_process() -> Owner:
    """This process as an owner."""
    started = start_time(os.getpid())
    assert started is not None, "no /proc: the tests' process hygiene needs Linux"
    return os.getpid(), started


def alive(owner: Owner) -> bool:
    """Whether the owner still runs (the same process, not a later one given its pid)."""
    return start_time(owner[0]) == owner[1]


# -- children that die with their parent ----------------------------------------------------------------------

_prctl: Any = None


def _load_prctl() -> Any:
    """libc's prctl, looked up in the parent: between fork and exec the child only calls it."""
    global _prctl
    if _prctl is None:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    return _prctl


def owned(popen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Popen keyword arguments plus a `preexec_fn` that makes the child die (SIGKILL) with this process.

    Linux only, and only when called from the main thread (the signal fires when the forking thread ends);
    otherwise the arguments are returned as they are and the reaper is what ends the child."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return popen_kwargs
    import ctypes

    prctl, parent, before = _load_prctl(), os.getpid(), popen_kwargs.get("preexec_fn")
    option, kill = ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL)

    def die_with_parent() -> None:
        if before is not None:
            before()
        prctl(option, kill)
        if os.getppid() != parent:  # the parent died before the prctl: nobody is left to send the signal
            os.kill(os.getpid(), signal.SIGKILL)

    return popen_kwargs | {"preexec_fn": die_with_parent}


def popen_owned(args: Sequence[Any], **kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen` of a child that dies with this process (see `owned`)."""
    return subprocess.Popen(args, **owned(kwargs))


def run_owned(args: Sequence[Any], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run` of a child that dies with this process (see `owned`)."""
    return subprocess.run(args, **owned(kwargs))


# -- owned folders and the reaper -----------------------------------------------------------------------------

_reaper: tuple[int, int] | None = None  # (the owner that started it, the write end of its pipe)


def _forget_reaper() -> None:
    """In a forked child: close the inherited write end (it would hold the reaper off) and own nothing yet."""
    global _reaper
    if _reaper is not None:
        with contextlib.suppress(OSError):
            os.close(_reaper[1])
        _reaper = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_reaper)


def ensure_reaper() -> Owner:
    """Start this process's reaper (once) and set OWNER_ENV for the processes it starts from now on."""
    global _reaper
    owner = this_process()
    os.environ[OWNER_ENV] = f"{owner[0]}:{owner[1]}"
    if _reaper is None or _reaper[0] != owner[0]:
        read_end, write_end = os.pipe()
        command = [sys.executable, "-I", "-S", str(Path(__file__).absolute()), "reap", *map(str, owner)]
        subprocess.Popen(
            [*command, tempfile.gettempdir()], stdin=read_end, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd="/", start_new_session=True,
        )  # fmt: skip
        os.close(read_end)
        _reaper = (owner[0], write_end)
    return owner


def owned_temp_dir(prefix: str) -> str:
    """`tempfile.mkdtemp(prefix=prefix)` with a marker naming this process: removed by the reaper or the next
    session's sweep once this process is gone (remove it yourself when done; `sweep` is the safety net)."""
    if not prefix.startswith(PREFIXES):
        raise ValueError(f"an owned folder's prefix starts with one of {PREFIXES}, not {prefix!r}")
    pid, started = ensure_reaper()
    path = tempfile.mkdtemp(prefix=prefix)
    marker = {"pid": pid, "start": started, "boot": _boot_id(), "pid_namespace": _pid_namespace()}
    (Path(path) / f"{MARKER}.part").write_text(json.dumps(marker))
    (Path(path) / f"{MARKER}.part").rename(Path(path) / MARKER)  # a sweep never reads half a marker
    return path


def folder_owner(path: Path) -> Owner | None:
    """The owner named by a folder's marker (None: no marker, or not one of ours)."""
    marker = _marker(path)
    return None if marker is None else _owner(marker)


def _marker(path: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((path / MARKER).read_text())
        _owner(marker)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return marker if isinstance(marker, dict) else None


def _owner(marker: dict[str, Any]) -> Owner:
    return int(marker["pid"]), int(marker["start"])


def _boot_id() -> str:
    """This boot of the machine (start times count from it)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    """The pid namespace this process sees pids in (a /tmp shared between containers holds others' markers)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


# -- the sweep --------------------------------------------------------------------------------------------------


@dataclass
class Swept:
    """What a sweep did: the processes it killed and the folders it removed."""

    killed: list[int] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass
class _Process:
    pid: int
    environ: bytes
    cmdline: bytes
    cwd: str

    def owner(self) -> Owner | None:
        found = re.search(rb"(?:^|\0)" + OWNER_ENV.encode() + rb"=(\d+):(\d+)(?:\0|$)", self.environ)
        return (int(found.group(1)), int(found.group(2))) if found else None

    def names(self, folders: re.Pattern[bytes] | None) -> bool:
        if folders is None:
            return False
        return any(folders.search(text) for text in (self.environ, self.cmdline, self.cwd.encode()))


def _processes() -> Iterator[_Process]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ, cmdline = (entry / "environ").read_bytes(), (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        yield _Process(int(entry.name), environ, cmdline, cwd)


def _spared() -> set[int]:
    """This process and its ancestors (and init): a sweep never kills them."""
    spared, pid = {1, os.getpid()}, os.getppid()
    while pid > 1 and pid not in spared:
        spared.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return spared


def _pattern(folders: Sequence[Path]) -> re.Pattern[bytes] | None:
    """Any of the folders' paths, not followed by more of a name."""
    if not folders:
        return None
    return re.compile(rb"(?:" + b"|".join(re.escape(os.fsencode(f)) for f in folders) + rb")(?![\w.-])")


def sweep(gone: Owner | None = None, where: str | None = None, dry_run: bool = False) -> Swept:
    """Kill the processes and remove the folders of owners that are gone.

    `gone`: sweep for that owner only, taken as gone (the reaper, once its owner has ended). Without it: for
    every owner that is not alive, and the unmarked folders of our prefixes that are a day old and that no
    process names. `where`: the temporary directory to look in (tempfile's by default). `dry_run`: only say what
    would be killed and removed."""
    judged: dict[Owner, bool] = {}

    def is_gone(owner: Owner) -> bool:
        if gone is not None:
            return owner == gone
        if owner not in judged:
            judged[owner] = not alive(owner)
        return judged[owner]

    folders: list[Path] = []
    unmarked: list[Path] = []
    for entry in _entries(Path(where or tempfile.gettempdir())):
        marker = _marker(entry)
        if marker is None:
            if gone is None and entry.name.startswith(UNMARKED_PREFIXES) and _age(entry) > UNMARKED_AGE:
                unmarked.append(entry)
        elif gone is None and marker.get("boot", _boot_id()) != _boot_id():
            folders.append(entry)  # made before the machine last started: its owner is gone
        elif marker.get("pid_namespace", _pid_namespace()) == _pid_namespace() and is_gone(_owner(marker)):
            folders.append(entry)  # (a marker from another pid namespace, a shared /tmp, is not ours to judge)

    swept, pattern, spared = Swept(), _pattern(folders), _spared()

    def leftover(process: _Process) -> bool:
        owner = process.owner()
        return (owner is not None and is_gone(owner)) or process.names(pattern)

    for _round in range(50):  # again until none is left: a process may start another while it is being killed
        victims = [p.pid for p in _processes() if p.pid not in spared and leftover(p)]
        if dry_run:
            swept.killed = victims
            break
        if not victims:
            break
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                continue
            if pid not in swept.killed:
                swept.killed.append(pid)
        time.sleep(0.1)
    if unmarked:
        in_use = [p for p in _processes() if p.names(_pattern(unmarked))]
        folders += [f for f in unmarked if not any(p.names(_pattern([f])) for p in in_use)]
    for folder in folders:
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
        if dry_run or not folder.exists():
            swept.removed.append(str(folder))
    return swept


def _entries(root: Path) -> list[Path]:
    """The folders in `root` whose names start with one of our prefixes (no symbolic links)."""
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    return [e for e in entries if e.name.startswith(PREFIXES) and not e.is_symlink() and e.is_dir()]


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def run_processes(owner: Owner, folders: Sequence[str] = ()) -> list[int]:
    """The live processes of an owner: carrying its OWNER_ENV, or naming one of `folders` (the owner excluded)."""
    pattern = _pattern([Path(f) for f in folders])
    return [p.pid for p in _processes() if p.pid != owner[0] and (p.owner() == owner or p.names(pattern))]


def _reap(argv: list[str]) -> None:
    """The reaper: wait for the owner to end (end of file on stdin), then sweep for it."""
    owner, where = (int(argv[0]), int(argv[1])), argv[2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    sweep(gone=owner, where=where)


if __name__ == "__main__":
    if sys.argv[1:2] != ["reap"] or len(sys.argv) != 5:
        raise SystemExit(f"usage: {sys.argv[0]} reap PID START TMPDIR")
    _reap(sys.argv[2:])
