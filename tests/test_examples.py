"""Every example runs in smoke mode (RESBUILDER_SMOKE=1 shrinks data and epochs),
so examples never rot."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name, *args, **extra_env):
    env = {**os.environ, "RESBUILDER_SMOKE": "1", "OMP_NUM_THREADS": "1", **extra_env}
    out = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
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


def test_quickstart_replays_its_time_plan_to_the_same_model(tmp_path):
    pytest.importorskip("mnist")
    plan = tmp_path / "plan.json"
    first = _run("quickstart.py", "--seed", "1", "--save-plan", str(plan))
    assert f"written to {plan}" in first and json.loads(plan.read_text())["max_time"] == 60
    again = _run("quickstart.py", "--seed", "1", "--plan", str(plan))

    def model(out):  # steps (without their seconds), accuracy, FLOPs and the layer table
        lines = re.findall(r"^(?:step |test accuracy|FLOPs per image|architectures tried|"
                           r"Architecture\(|stem|pool|stage|head|total).*$", out, flags=re.M)
        return [re.sub(r" \([0-9.]+s\)$", "", line) for line in lines]

    assert model(again) == model(first) and len(model(first)) > 5


def test_architectures_example_prints_both_presets():
    out = _run("architectures.py")
    assert out.count("Architecture(input") >= 4
    assert "873,197,568" in out  # ResNet18 at 28x28, our count (= torch's)


def test_plot_search_example_writes_three_pngs(tmp_path):
    pytest.importorskip("mnist")
    pytest.importorskip("matplotlib")
    out = _run("plot_search.py", RESBUILDER_OUT=str(tmp_path))
    names = ["search_history.png", "architecture.png", "removal_positions.png"]
    for name in names:
        path = tmp_path / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
        assert str(path) in out  # the script prints where each figure went


def test_save_and_export_example_agrees():
    out = _run("save_and_export.py")
    assert "predict_proba identical: True" in out
    diffs = [float(d) for d in re.findall(r"max \|proba diff\| = ([0-9.e+-]+)", out)]
    assert len(diffs) >= 2 and max(diffs) <= 1e-4  # to_torch, torch.export (+ ONNX)
    assert "DIFFERS" not in out
    assert out.rstrip().endswith("all predictions agree: True")


def _floats(pattern, out):
    m = re.search(pattern, out)
    assert m, f"{pattern!r} not in the output:\n{out}"
    return [float(v.replace(",", "")) for v in m.group(1).split()]


def test_cross_validation_example_scores_every_fold():
    out = _run("cross_validation.py")
    accs = _floats(r"fold accuracies: ([0-9. ]+)", out)
    flops = _floats(r"fold FLOPs:\s+([0-9, ]+?)\n", out)
    assert len(accs) == len(flops) == 3  # smoke: 3 folds
    assert all(0.0 <= a <= 1.0 for a in accs)
    assert all(0 < f <= 2e5 for f in flops)  # every fold's network within the budget
    mean = _floats(r"mean accuracy:\s+([0-9.]+)", out)[0]
    assert mean > 0.3  # chance is 0.1: 400 digits x 5 epochs learn something
    assert abs(mean - sum(accs) / len(accs)) < 1e-3


def test_grid_search_example_picks_a_budget_from_the_grid():
    out = _run("grid_search_budget.py")
    rows = re.findall(r"^\s*([0-9,]+)\s+([0-9.]+)\s+([0-9.]+)$", out, flags=re.M)
    grid = {float(b.replace(",", "")): float(m) for b, m, _ in rows}
    assert set(grid) == {5e4, 2e5}  # the smoke grid
    chosen = _floats(r"chosen flop_budget: ([0-9,]+)", out)[0]
    assert chosen in grid
    assert grid[chosen] >= max(grid.values()) - 0.01  # within the tolerance of the best
    assert all(b >= chosen or grid[b] < max(grid.values()) - 0.01 for b in grid)  # cheapest
    flops, budget = _floats(r"refit FLOPs:\s+([0-9,]+) of", out)[0], chosen
    assert 0 < flops <= budget
    acc = _floats(r"test accuracy:\s+([0-9.]+)", out)[0]
    assert 0.2 < acc <= 1.0


def test_pipeline_flat_example_predicts_every_row():
    out = _run("pipeline_flat.py")
    assert "64 values per row -> 48 after the transformer" in out
    assert "input_shape_:    (1, 6, 8)" in out  # image_shape=(6, 8) read as 1 channel
    n_pred, n_test = (int(v) for v in re.search(r"predictions:\s+(\d+) for (\d+) test rows",
                                                 out).groups())
    assert n_pred == n_test == 450
    acc = _floats(r"test accuracy:\s+([0-9.]+)", out)[0]
    assert 0.2 < acc <= 1.0


def test_gpu_example_falls_back_and_predicts_on_a_cpu_only_process():
    pytest.importorskip("mnist")
    import torch

    out = _run("gpu.py")
    if not torch.cuda.is_available():
        assert "CUDA is not available: training on the CPU instead" in out
        assert "fit on cpu" in out
    assert "cuda visible: False" in out  # the reloading process saw no GPU
    here = _floats(r"test accuracy here: ([0-9.]+)", out)[0]
    there = _floats(r"test accuracy there: ([0-9.]+)", out)[0]
    assert 0.2 < here <= 1.0
    same, n = (int(v) for v in re.search(r"same predictions:\s+(\d+) of (\d+)", out).groups())
    if not torch.cuda.is_available():  # CPU both times: identical predictions
        assert same == n == 500 and here == there


def test_resume_time_budget_example_goes_on_from_the_checkpoint():
    out = _run("resume_time_budget.py")
    # The paper-length search is cut in the first piece; the second goes on
    # and is cut again or, on a fast machine, finishes it ...
    first_stop, second_stop = re.findall(r"^stopped:\s+(\S+)$", out, flags=re.M)
    assert first_stop == "max_time" and second_stop in ("max_time", "None")
    first, second = (int(n) for n in re.findall(r"architectures tried: (\d+)", out))
    # ... and the second piece continues the first: its history holds the
    # first's records up to the first operation the first piece left out (a
    # piece that skipped an insertion ran its cycle's MorphNet step and later
    # cycles; those are run again after the skipped insertion), and its
    # search time counts both pieces.
    resumed = re.search(r"resumes at record:\s+(\d+)", out)
    start = int(resumed.group(1)) if resumed and resumed.start() < out.index("--- fit 2") \
        else first
    assert 1 <= start <= first and start < second
    t1, t2 = (float(t) for t in re.findall(r"search time:\s+([0-9.]+) s", out))
    assert t2 > t1
    for flops in re.findall(r"FLOPs per image:\s+([0-9,]+) of", out):
        assert 0 < int(flops.replace(",", "")) <= 2e5
    accs = [float(a) for a in re.findall(r"test accuracy:\s+([0-9.]+)", out)]
    assert len(accs) == 2 and all(acc > 0.2 for acc in accs)  # chance is 0.1


def test_dask_grid_search_example_runs_its_fits_on_workers():
    pytest.importorskip("distributed")
    out = _run("dask_grid_search.py")
    assert "Dask cluster: 2 workers" in out
    rows = re.findall(r"^\s*([0-9,]+)\s+([0-9.]+)\s+([0-9.]+)$", out, flags=re.M)
    assert {float(b.replace(",", "")) for b, _, _ in rows} == {5e4, 2e5}  # the smoke grid
    assert _floats(r"CV fits:\s+(\d+)", out)[0] == 4  # 2 budgets x 2 folds
    # ... run as Dask tasks on the workers (joblib may batch several fits per task).
    assert sum(int(n) for n in re.findall(r"tcp://[^=\s]+=(\d+)", out)) >= 1
    chosen = _floats(r"chosen flop_budget: ([0-9,]+)", out)[0]
    assert 0 < _floats(r"refit FLOPs:\s+([0-9,]+) of", out)[0] <= chosen
    assert 0.2 < _floats(r"test accuracy:\s+([0-9.]+)", out)[0] <= 1.0


def test_ray_example_explains_itself_without_ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        out = _run("ray_grid_search.py")  # exit status 0 is checked by _run
        assert "ray is not installed" in out and "pip install" in out
    else:  # Ray present: the example really runs a (smoke) search
        out = _run("ray_grid_search.py")
        assert _floats(r"test accuracy:\s+([0-9.]+)", out)[0] > 0.2  # chance is 0.1


def test_image_folder_example_reads_the_pngs_it_wrote_and_fits():
    out = _run("image_folder.py")
    assert "wrote 1797 PNG files in 10 class folders" in out
    assert "loaded X: (1797, 8, 8, 1) uint8" in out  # gray PNGs: one channel
    assert "input_shape_:    (1, 8, 8)" in out
    assert "classes_:        ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']" in out
    assert 0.3 < _floats(r"test accuracy:\s+([0-9.]+)", out)[0] <= 1.0  # chance: 0.1
    assert 0 < _floats(r"FLOPs per image:\s+([0-9,]+) of", out)[0] <= 2e5
