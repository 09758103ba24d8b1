"""The wheel carries the grammar and the standard library: build it, install it in a fresh
virtual environment, and check a spec from outside the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

from .conftest import ROOT


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to copy the checkout")
def test_wheel_installs_and_checks_a_spec(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(dist), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("metadsl-*.whl")
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    # The dependencies come from this environment (a .pth line; its own .pth files, such as
    # the editable install of metadsl, are not read), metadsl itself only from the wheel.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    with open(site.strip() + "/deps.pth", "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    spec = tmp_path / "spec.mrl"
    shutil.copy(ROOT / "specs" / "maml_nav2d.mrl", spec)
    where = subprocess.run([str(python), "-c", "import metadsl.resources as r; "
                            "print(r.grammar_path()); print(r.stdlib_dir())"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert str(env_dir) in where and "_data" in where
    r = subprocess.run([str(env_dir / "bin" / "metadsl"), "check", "spec.mrl"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ok: 1 spec checked" in r.stderr
