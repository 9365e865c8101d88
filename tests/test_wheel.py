"""quotad as an operator installs it: the wheel built from this tree, installed into a fresh venv, runs `quotad demo`
from a directory that is not this repository. The example township the demo enforces must come with the wheel
(package data), not from the repository's `config/`.

The venv gets the wheel in its own site-packages and the dependencies from the development venv through a .pth
line (a line of a .pth file only adds a path: the development venv's own .pth files, among them the editable
install of quotad, are not run), so the test needs no package index and the installed quotad is the wheel's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path, timeout: float = 120, lang: str = "C.UTF-8") -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": lang, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout, check=False
    )


def test_the_installed_wheel_runs_the_demo(tmp_path: Path) -> None:
    # the tree as it is (uncommitted edits too), without a build/ left by an earlier build that a wheel could pick up
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"),
    )
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", tree, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("quotad-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    for module in (ROOT / "quotad").rglob("*.py"):  # pyproject lists the packages: none may be forgotten
        assert module.relative_to(ROOT).as_posix() in packed
    assert "quotad/example/township.toml" in packed
    example = ROOT / "config" / "township.toml"
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("quotad/example/township.toml") == example.read_bytes()  # the file itself, not a link
        catalog = "quotad/locale/zh_CN/LC_MESSAGES/quotad.mo"
        assert archive.read(catalog) == (ROOT / catalog).read_bytes()  # compiled: an installed quotad needs no tool

    venv = tmp_path / "venv"
    made = run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    installed = run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    where = run(python, "-c", "import quotad; print(quotad.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the wheel's quotad, not this tree's

    # the installed package finds its catalog: the example's warning, in Chinese
    checked = run(venv / "bin" / "quotad", "check-config", "-c", example, cwd=tmp_path, lang="zh_CN.UTF-8")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stderr.startswith(f"warning: {example}:19: township.feeder_meters: 为空：全镇用电量"), checked.stderr

    result = run(venv / "bin" / "quotad", "demo", "--days", "1", "--speed", "2400", cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "荣生公司造纸厂" in result.stdout  # an alert of the example township, as it arrived
    assert re.search(r"54,?611", result.stdout)  # the township's day against its cap
    directory = re.search(r"Everything is in (\S+) ", result.stdout)
    assert directory is not None, result.stdout[-2000:]
    running = subprocess.run(["pgrep", "-af", directory[1]], capture_output=True, text=True, check=False).stdout
    assert running.strip() == ""  # mosquitto, influxd, the simulator and the daemon are gone
