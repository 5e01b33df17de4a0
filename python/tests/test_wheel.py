"""The README's Install section, run as written: ``python/build-wheel.sh dist`` makes one abi3,
manylinux-tagged wheel, and ``pip install dist/consul_rs-*.whl`` installs it into a fresh
virtualenv whose ``PATH`` has no Rust, where it embeds an agent.

To keep the test command to one build of the core (the dev profile, shared with ``cargo test``
and ``pip install ./python``), the wheel is built with ``CONSUL_RS_WHEEL_PROFILE=dev``: the same
script and packaging steps (maturin's abi3 tagging and manylinux audit, ``--compatibility pypi``)
as the documented release build, over the dev build of the extension already in the target dir.
That the script builds release when nothing overrides it is checked with a fake maturin."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "python" / "README.md"
SCRIPT = REPO / "python" / "build-wheel.sh"


def _install_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("\n## Install\n"):]
    section = section[:section.index("\n## ", 1)]
    return re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)


def _maturin() -> str:
    found = shutil.which("maturin", path=str(Path(sys.executable).parent)) or shutil.which("maturin")
    if found is None:
        pytest.skip("maturin is not installed (scripts/test-all.sh installs it into .venv)")
    return found


def test_install_section_has_the_build_and_the_install() -> None:
    build, install = _install_blocks()
    assert build.strip() == "python/build-wheel.sh dist"
    assert "pip install dist/consul_rs-*.whl" in install


def test_build_wheel_runs_maturin_build_release_by_default(tmp_path: Path) -> None:
    # What the README's command runs when nothing overrides the profile: `maturin build
    # --release` with the PyPI (manylinux) audit. A fake maturin records its arguments.
    fake = tmp_path / "maturin"
    args_file = tmp_path / "args"
    wheel = tmp_path / "out" / "consul_rs-0.1.0-cp310-abi3-manylinux_2_17_x86_64.whl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {args_file}\nmkdir -p {wheel.parent} && touch {wheel}\n"
                    f"echo 'Built wheel for abi3 Python >= 3.10 to {wheel}'\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CONSUL_RS_WHEEL_PROFILE"}
    out = subprocess.run([str(SCRIPT), str(tmp_path / "out")], env={**env, "MATURIN": str(fake)}, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(wheel)
    args = args_file.read_text().split()
    assert args[:2] == ["build", "--release"] and "--compatibility" in args and "pypi" in args, args


def test_readme_install_runs_as_written(tmp_path: Path) -> None:
    build, install = _install_blocks()
    maturin = _maturin()
    # The repository root as the README has it: python/ linked in, the wheel written under here.
    (tmp_path / "python").symlink_to(REPO / "python")
    env = {**os.environ, "CONSUL_RS_WHEEL_PROFILE": "dev", "MATURIN": maturin, "PYTHON": sys.executable}
    env.pop("MATURIN_PEP517_ARGS", None)
    built = subprocess.run(["bash", "-euo", "pipefail", "-c", build], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=1800)
    assert built.returncode == 0, built.stdout + built.stderr[-4000:]
    wheels = sorted((tmp_path / "dist").glob("consul_rs-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    assert built.stdout.strip() == str(wheel)
    # One wheel for every CPython >= 3.10 (abi3), PyPI-compatible manylinux platform tag.
    assert re.fullmatch(rf"consul_rs-0\.1\.0-cp310-abi3-manylinux_\d+_\d+_{platform.machine()}"
                        rf"(\.manylinux\w+)?\.whl", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "consul_rs/_native.abi3.so" in names, names
        assert {"consul_rs/__init__.py", "consul_rs/py.typed", "consul_rs/_native.pyi"} <= set(names)
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        assert "Requires-Python: >=3.10" in metadata

    # A fresh virtualenv, and a PATH with no Rust on it: the wheel needs nothing to build.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    path = os.pathsep.join([str(venv / "bin"), "/usr/bin", "/bin"])
    bare = {"PATH": path, "HOME": str(tmp_path), "VIRTUAL_ENV": str(venv), "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "CARGO": "/nonexistent/cargo", "RUSTUP_TOOLCHAIN": "none"}
    installed = subprocess.run(["bash", "-euo", "pipefail", "-c", install], cwd=tmp_path, env=bare,
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert installed.stdout.strip().splitlines()[-1] == "0.1.0"
    # The installed copy, not the checkout, and it runs a node.
    smoke = ("import consul_rs, sys\n"
             "assert consul_rs.__file__.startswith(sys.prefix), consul_rs.__file__\n"
             "with consul_rs.Agent() as a:\n"
             "    print(a.client().kv.put('wheel/ok', b'yes'))\n")
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", smoke], cwd=tmp_path, env=bare, capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0 and ran.stdout.strip() == "True", ran.stdout + ran.stderr
