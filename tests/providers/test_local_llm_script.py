"""scripts/local_llm.sh, run for real: a machine without a compiler gets told what to install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "local_llm.sh"
TOOLS = ("bash", "flock", "mktemp", "date", "head", "basename", "rm", "mkdir", "mv", "nproc", "cat")


def test_a_missing_compiler_is_named_with_the_apt_command(tmp_path):
    bin_dir = tmp_path / "bin"  # every tool the script needs except gcc, g++ and cmake
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    venv = Path(sys.executable).parent.parent
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "VENV": str(venv),
           "DEEPRECALL_WHEEL_DIR": str(tmp_path / "wheels")}
    proc = subprocess.run(["bash", str(SCRIPT), "wheel"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "apt-get install build-essential cmake" in proc.stderr and "gcc g++ cmake" in proc.stderr
    assert not any(p.name.startswith(".build-") for p in (tmp_path / "wheels").iterdir())  # nothing half-built
