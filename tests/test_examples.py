"""Every example runs in smoke mode (RESBUILDER_SMOKE=1 shrinks data and epochs),
so examples never rot."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name):
    env = {**os.environ, "RESBUILDER_SMOKE": "1", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_quickstart_reports_accuracy_architecture_and_budget():
    pytest.importorskip("mnist")
    out = _run("quickstart.py")
    acc = float(re.search(r"test accuracy:\s+([0-9.]+)", out).group(1))
    assert 0.2 < acc <= 1.0  # 500 images, 1 epoch: far above chance (0.1)
    m = re.search(r"FLOPs per image:\s+([0-9,]+) of a ([0-9,]+) budget", out)
    flops, budget = (int(g.replace(",", "")) for g in m.groups())
    assert 0 < flops <= budget
    assert re.search(r"architectures tried: \d+", out)
    assert "Architecture(input 1x28x28" in out and "total" in out


def test_architectures_example_prints_both_presets():
    out = _run("architectures.py")
    assert out.count("Architecture(input") >= 4
    assert "873,197,568" in out  # ResNet18 at 28x28, our count (= torch's)
