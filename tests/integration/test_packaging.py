"""zonesync installs one importable package, `zonesync`: the built wheel holds nothing else, and an installed
zonesync runs beside a project whose own `tasks.py`, `flows/` and `schemas/` would shadow top-level names."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "schemas", "deployments")
SHADOWS = {
    "tasks.py": "raise SystemExit('the project tasks.py was imported')\n",
    "flows/__init__.py": "raise SystemExit('the project flows package was imported')\n",
    "schemas/__init__.py": "raise SystemExit('the project schemas package was imported')\n",
    "deployments/__init__.py": "raise SystemExit('the project deployments package was imported')\n",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """zonesync built as a wheel (no dependencies), from a copy of what a source distribution holds (building
    in the checkout would leave a build/ folder there)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in PACKAGES:
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
         str(source)],
        check=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("zonesync-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()

    assert {name.split("/")[0] for name in names} == {"zonesync", wheel.name.split("-py3")[0] + ".dist-info"}
    assert {"zonesync/deployments/prefect.yaml", "zonesync/deployments/automations.yaml"} <= set(names)
    assert not any(name.startswith("zonesync/tests") or name.startswith("zonesync/bench") for name in names)


def test_an_installed_zonesync_runs_the_demo_from_a_project_with_its_own_tasks_and_flows(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # zonesync's dependencies come from this environment (a plain path: its .pth import hooks, which map
    # the editable checkout, are not run); zonesync itself only from the wheel.
    site = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())  # fmt: skip
    (site / "zonesync_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)], check=True, timeout=300)
    project = tmp_path / "project"
    for name, text in SHADOWS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZONESYNC_", "PREFECT_", "PYTHON"))}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    imported = subprocess.run(
        [python, "-c", "import zonesync.flows.retry_sync, zonesync.deployments.api, zonesync.tasks.push.pusher as p; "
         "print(p.__file__)"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    demo = subprocess.run(
        [venv / "bin" / "zonesync", "demo"], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )

    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip().startswith(str(site)), imported.stdout
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Retry sync" in demo.stdout and (project / ".zonesync" / "intranet.db").exists()
