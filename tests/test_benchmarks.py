"""Benchmarks that only a GPU session can run for real must not rot in between:
``gpu_check.py`` runs end to end on the CPU in smoke mode."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_gpu_check_runs_its_checks_on_the_cpu(tmp_path):
    pytest.importorskip("mnist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--smoke",
                          "--devices", "cpu,cuda", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "no CUDA device" in out.stdout and "checks: PASSED" in out.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    (row,) = report["rows"]
    assert row["device"] == "cpu" and 0.1 < row["test acc"] <= 1.0
    assert row["FLOPs"] <= 1e7
    check = report["checks"]["cpu fit, loaded on CPU"]
    assert check["joblib"] == {"same labels": True, "max |proba diff|": 0.0}
    assert check["saved"]["same labels"] is True
    assert "| cpu | fp32 |" in (tmp_path / "gpu_check.md").read_text()


def test_search_value_benchmark_prints_its_tables(tmp_path):
    """benchmarks/search_value.py (ResBuilder against what the same time buys
    otherwise) runs every kind of row in smoke mode and prints the margin."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / "search_value.py"), "--smoke",
                          "--datasets", "digits", "--threads", "1",
                          "--only", "resbuilder,uniform,svc", "--out",
                          str(tmp_path / "sv.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| ResBuilder |" in out.stdout and "| SVC(rbf) |" in out.stdout
    assert "margin over the best other row within budget: " in out.stdout
    report = json.loads((tmp_path / "sv.json").read_text())
    rows = report["datasets"]["digits"]["rows"]
    assert {r["method"] for r in rows} >= {"ResBuilder", "SVC(rbf)"}
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows if "acc" in r)
