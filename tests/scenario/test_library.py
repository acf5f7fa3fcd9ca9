"""The scenario library is installed with the package and loadable by name
(`vm.load("mapfixed-two-readers")`, `vmactors explore mapfixed-two-readers`), while
paths keep working; the wheel ships the one copy of each file that the repository's
`scenarios/` holds."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vmactors import library
from vmactors.errors import UsageError
from vmactors.testing import VM

ROOT = Path(__file__).resolve().parents[2]


def test_the_library_is_the_repositorys_scenarios_folder() -> None:
    assert library.library_dir() == ROOT / "scenarios"
    assert library.names() == sorted(p.stem for p in (ROOT / "scenarios").glob("*.toml"))
    assert "mapfixed-two-readers" in library.names()


@pytest.mark.parametrize("name", ["mapfixed-two-readers", "mapfixed-two-readers.toml"])
def test_find_by_name(name) -> None:
    assert library.find(name) == ROOT / "scenarios" / "mapfixed-two-readers.toml"


def test_an_unknown_name_is_one_line_with_the_closest_names() -> None:
    with pytest.raises(UsageError) as e:
        library.find("mapfixed-to-readers")
    assert str(e.value).startswith("mapfixed-to-readers: no such file, and no library scenario of that name; "
                                   "did you mean 'mapfixed-two-readers'")
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="no such file"):
        library.resolve("scenarios/nope.toml")


def test_a_path_wins_over_a_name(tmp_path, monkeypatch) -> None:
    mine = tmp_path / "mapfixed-two-readers"
    mine.write_text("name = 'mine'\n[[thread]]\nops = ['r0 = load 0x10000']\n")
    monkeypatch.chdir(tmp_path)
    assert library.resolve("mapfixed-two-readers") == Path("mapfixed-two-readers")


def test_vm_load_by_name_from_any_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    vm = VM()
    s = vm.load("mapfixed-two-readers")
    assert s.name == "mapfixed-two-readers"
    assert vm.load("scenarios/mapfixed-two-readers.toml".replace("scenarios/", str(ROOT / "scenarios") + "/")) == s
    assert vm.run("mapfixed-two-readers", "wilcox", seed=1).regs.keys() == {"0:r0", "1:r1", "1:r2"}


def test_the_cli_takes_names_from_an_empty_folder(vmcli, tmp_path) -> None:
    p = vmcli("explore", "munmap-zero-entry", "--policy", "glisse", "--no-trace", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Test munmap-zero-entry  policy glisse")
    p = vmcli("run", "mapfixed-two-readers", cwd=tmp_path)
    assert p.returncode == 0 and "mapfixed-two-readers: ok" in p.stdout
    p = vmcli("check", "mapfixed-two-readers", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.endswith("4 passed, 0 failed\n")


def test_check_and_matrix_default_to_the_library_where_there_is_no_scenarios_folder(vmcli, tmp_path) -> None:
    p = vmcli("matrix", "--policy", "mmap_sem", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    rows = [line.split()[0] for line in p.stdout.splitlines()[2:]]
    assert rows == library.names()


def test_the_wheel_ships_every_library_scenario(tmp_path) -> None:
    """Build the wheel from the sources (offline: no build isolation), install it into
    a folder of its own and load a scenario by name from there."""
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    for folder in ("vmactors", "scenarios"):
        subprocess.run(["cp", "-r", str(ROOT / folder), str(src / folder)], check=True)
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("vmactors-*.whl")
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(Path(n).name for n in z.namelist() if n.startswith("vmactors/scenario_library/"))
        z.extractall(tmp_path / "site")
    assert shipped == sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    code = ("from vmactors import library; from vmactors.testing import VM; "
            "print(library.library_dir()); print(VM().load('mapfixed-two-readers').name)")
    deps = [p for p in sys.path if p.endswith("site-packages")]
    env = {"PYTHONPATH": ":".join([str(tmp_path / "site"), *deps]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(tmp_path / "site" / "vmactors" / "scenario_library"),
                                       "mapfixed-two-readers"]
