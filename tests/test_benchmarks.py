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
    # How well the chosen network fits: the refit's smoothed loss cannot fall
    # below the smoothed target's entropy (0.50 at 0.1 over ten classes).
    (rb,) = [r for r in rows if r["method"] == "ResBuilder"]
    assert rb["chosen_train_loss"] > 0 and rb["chosen_valid_loss"] > 0
    assert 0.0 <= rb["chosen_valid_acc"] <= 1.0 and rb["chosen_epochs"] >= 1
    assert rb["refit_train_loss"] > 0.49  # bfloat16 rounding aside


def test_throughput_benchmark_prints_its_tables(tmp_path):
    """benchmarks/throughput.py (our trainer against a plain loop and the
    matmul, plus the per-batch audit) runs end to end in smoke mode."""
    pytest.importorskip("mnist")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / "throughput.py"), "--smoke",
                          "--threads", "1", "--out", str(tmp_path / "tp.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| demo (2 blocks) | 7,918,400 |" in out.stdout
    assert "| proximal step |" in out.stdout
    report = json.loads((tmp_path / "tp.json").read_text())
    assert [r["net"] for r in report["rows"]] == ["minimal", "demo", "6-block"]
    assert report["matmul_gflops"] > 0 and report["matmul_bf16_gflops"] > 0
    for r in report["rows"]:
        assert set(r["img_s"]) == {"nchw", "cl", "trainer-glibc", "trainer-fp32", "trainer"}
        assert all(v > 0 for v in r["img_s"].values())
        assert 0 < r["trainer_of_matmul"] < 5
        assert r["trainer_vs_fp32"] == pytest.approx(
            r["img_s"]["trainer"] / r["img_s"]["trainer-fp32"])


def test_inputs_benchmark_prints_its_tables(tmp_path):
    """benchmarks/inputs.py (1-D signals against SVC/MLP, small vs upscaled
    images) runs every row in smoke mode; digits when MNIST is not installed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / "inputs.py"), "--smoke",
                          "--threads", "1", "--out", str(tmp_path / "inputs.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "| ResBuilder, 1-D start net |" in out.stdout and "| SVC(rbf) |" in out.stdout
    assert "size-chosen start net" in out.stdout and "old start net" in out.stdout
    report = json.loads((tmp_path / "inputs.json").read_text())
    one_d = report["parts"]["1d"]["rows"]
    assert len(one_d) == 4 and all("error" not in r for r in one_d)
    assert all(0.0 <= r["acc"] <= 1.0 and r["flops"] <= 1e5 for r in one_d)
    assert "stem 1x3/" in one_d[0]["notes"]
    large = report["parts"]["large"]
    assert len(large["rows"]) == 3 and all("error" not in r for r in large["rows"])
    assert "avgpool" in large["rows"][1]["notes"]
    starts = large["start_flops"]
    assert starts["large"] < starts["large, old"] / 10
    if report["config"]["images"] == "mnist":  # 28 px and 112 px pooled to 28: same maps
        assert starts["large"] < 3 * starts["native"]


def test_seed_spread_reads_the_numbers_the_demo_prints():
    """benchmarks/seed_spread.py parses quickstart's output; the README's demo
    output is such an output, so the parser and the README cannot drift apart."""
    sys.path.insert(0, str(BENCH))
    try:
        import seed_spread
    finally:
        sys.path.remove(str(BENCH))
    readme = (BENCH.parent / "README.md").read_text()
    block = readme[readme.index("step   0 start"):]
    row = seed_spread.parse(block[:block.index("```")])
    assert row["accuracy"] == 0.9921 and row["flops"] == 9_185_540
    assert row["architectures"] == len(row["steps"]) == 11
    assert (row["fit_s"], row["search_s"], row["refit_epochs"]) == (359, 136, 64)
    assert not any(s.endswith("s)") for s in row["steps"])
    with pytest.raises(ValueError, match="no .accuracy. line"):
        seed_spread.parse("step   0 start\n")


def test_pareto_benchmark_prints_the_front(tmp_path):
    """benchmarks/pareto.py (ResBuilder against fixed networks scaled to each
    budget) runs every row at two tiny budgets and judges each budget."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / "pareto.py"), "--smoke",
                          "--datasets", "digits", "--seeds", "0", "--threads", "1",
                          "--set", "REFIT_MAX_STRETCH=2", "--out", str(tmp_path / "pareto.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "ResBuilder against the best fixed network within each budget" in out.stdout
    assert "defaults.REFIT_MAX_STRETCH = 2 for this run" in out.stdout
    result = json.loads((tmp_path / "pareto.json").read_text())
    assert result["config"]["set_defaults"] == ["REFIT_MAX_STRETCH=2"]
    report = result["datasets"]["digits"]
    budgets = report["budgets"]
    assert budgets == [1e4, 3e4]
    rows = report["rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"ResBuilder", "2-conv CNN (scaled)", "uniform ResNet (scaled)",
                       "pyramid (scaled)", "SVC(rbf)", "MLPClassifier(256)"}
    for r in rows:
        assert "error" not in r, r
        if r["method"] in ("SVC(rbf)", "MLPClassifier(256)"):
            continue
        assert r["flops"] <= r["budget"], r
        if r["method"] == "ResBuilder":
            assert isinstance(r["n_collapsed"], int)
            assert 0 <= r["collapsed_s"] <= r["search_s"] + 1e-9
        else:  # a fixed row is scaled to its budget, not left far below it
            assert r["flops"] > 0.5 * r["budget"], r
    # both budgets judged, from the same rows the table shows
    assert set(report["verdicts"]) == {"10000", "30000"}
    assert all(v in ("ahead", "tie", "behind, within SE", "behind")
               for v in report["verdicts"].values())


def test_pareto_diagnostic_rows_take_the_cnn_apart(monkeypatch):
    """The opt-in rows of pareto.py: the CNN without its hidden dense layer and
    the pyramid with 3x3 convs are scaled to the budget and are the shapes
    they are named for (not measured by default)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import pareto
    from torch import nn

    assert "cnn_linear" not in pareto.DEFAULT_ROWS and "conv_pyramid" in pareto.ROWS
    shape, budget = (1, 28, 28), 3e5
    for build in (lambda s, n, f: pareto.scaled_cnn(s, n, f, hidden=False),
                  pareto.conv_pyramid):
        factor = pareto.widest(build, shape, 10, budget)
        net, _ = build(shape, 10, factor)
        flops = pareto.torch_flops(net, shape)
        assert 0.5 * budget < flops <= budget
        assert pareto.torch_flops(build(shape, 10, factor * 1.1)[0], shape) > flops
        convs = [m for m in net if isinstance(m, nn.Conv2d)]
        linears = [m for m in net if isinstance(m, nn.Linear)]
        assert len(linears) == 1 and linears[0].out_features == 10  # no hidden dense layer
        assert all(c.kernel_size == (3, 3) for c in convs)
    assert len([m for m in pareto.conv_pyramid(shape, 10, 1.0)[0]
                if isinstance(m, nn.Conv2d)]) == 3
    full = [m for m in pareto.scaled_cnn(shape, 10, 1.0)[0] if isinstance(m, nn.Linear)]
    assert [m.out_features for m in full] == [128, 10]


def test_pareto_pooled_pyramid_row_is_the_pyramid_on_half_size_images(monkeypatch):
    """The opt-in ``pooled_pyramid`` row trains the pyramid on 2x-pooled
    images, scaled to the budget, and says so where the images are too small."""
    monkeypatch.syspath_prepend(str(BENCH))
    import pareto

    assert "pooled_pyramid" in pareto.ROWS and "pooled_pyramid" not in pareto.DEFAULT_ROWS
    seen = {}
    monkeypatch.setattr(pareto.sv, "arch_row",
                        lambda method, arch, data, T, seed, on_all: seen.setdefault(
                            "row", dict(method=method, arch=arch, on_all=on_all)))

    class Data:
        shape, n_classes = (1, 28, 28), 10

    (row,) = pareto.row_pooled_pyramid(dict(data=Data, budget=1e5, T=1.0, seed=0))
    arch = seen["row"]["arch"]
    assert row["method"] == pareto.FIXED[5] and seen["row"]["on_all"]
    assert arch.stem.downsample == 2 and arch.stem_input_hw() == (14, 14)
    assert 0.9e5 < arch.flops() <= 1e5 and arch.stages[-1].transition
    Data.shape = (1, 1, 1)
    (row,) = pareto.row_pooled_pyramid(dict(data=Data, budget=1e5, T=1.0, seed=0))
    assert row["skipped"].startswith("does not fit")


def test_hidden_head_benchmark_swaps_only_the_head(monkeypatch, tmp_path):
    """benchmarks/hidden_head.py gives a ResBuilder network the CNN's hidden
    dense layer and nothing else: same body, FLOPs up by exactly that layer's
    cost, and its smoke run scores both variants."""
    monkeypatch.syspath_prepend(str(BENCH))
    import hidden_head
    import torch
    from torch import nn

    arch = hidden_head.default_arch((1, 28, 28), 10, 32)
    assert arch.summary().startswith("stem 3x3/32 | 32[-] > 32[-] > 32[32] |")
    plain, wide = hidden_head.build(arch, 0, 0), hidden_head.build(arch, 64, 0)
    assert isinstance(plain.head, nn.Linear) and plain.head.out_features == 10
    assert [m.out_features for m in wide.head if isinstance(m, nn.Linear)] == [64, 10]
    features = 32 * 7 * 7
    assert (hidden_head.torch_flops(wide, (1, 28, 28)) - arch.flops()
            == 2 * features * 64 + 2 * 64 * 10 - 2 * features * 10)
    body = {k: v for k, v in plain.state_dict().items() if not k.startswith("head")}
    assert all(torch.equal(v, wide.state_dict()[k]) for k, v in body.items())  # same init
    hidden_head.main(["--smoke", "--dataset", "digits", "--hidden", "0,16",
                      "--out", str(tmp_path / "hh.json")])
    rows = json.loads((tmp_path / "hh.json").read_text())["rows"]
    assert [r["hidden"] for r in rows] == [0, 16]
    assert all(0.1 < r["acc"] <= 1.0 and r["epochs"] > 0 for r in rows)
    assert rows[1]["flops"] > rows[0]["flops"]


def test_ranking_benchmark_refits_every_candidate_as_the_fit_did(tmp_path):
    """benchmarks/ranking.py refits each candidate of a search as the fit refit
    its choice: the chosen one's refit scores exactly what the fit scored."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(BENCH / "ranking.py"), "--smoke",
                          "--datasets", "digits", "--seeds", "0",
                          "--out", str(tmp_path / "ranking.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (fit,) = json.loads((tmp_path / "ranking.json").read_text())["datasets"]["digits"]
    cands = fit["candidates"]
    assert len(cands) == fit["n_offered"] >= 1  # every candidate, not only the pool's
    assert all(c["flops"] <= fit["budget"] for c in cands)
    (chosen,) = [c for c in cands if c["chosen"]]
    assert chosen["test_acc"] == fit["score"]
    assert fit["regret"] == max(c["test_acc"] for c in cands) - chosen["test_acc"]
    assert "median regret" in out.stdout


def test_pareto_set_changes_a_default_the_fit_reads_and_refuses_the_others(monkeypatch):
    """``--set NAME=VALUE`` patches a constant the package reads while it fits
    (parsed as its type) and refuses names it would not change."""
    monkeypatch.syspath_prepend(str(BENCH))
    import pareto
    from sklearn_resbuilder import defaults
    for name in ("REFIT_MAX_STRETCH", "REFIT_TIME_SHARE", "REFIT_USE_SHARE"):
        monkeypatch.setattr(defaults, name, getattr(defaults, name))  # restored after
    changed = pareto.set_defaults(["REFIT_MAX_STRETCH=64", "REFIT_TIME_SHARE=0.7"])
    assert changed == {"REFIT_MAX_STRETCH": (8, 64), "REFIT_TIME_SHARE": (0.6, 0.7)}
    assert defaults.REFIT_MAX_STRETCH == 64 and isinstance(defaults.REFIT_MAX_STRETCH, int)
    refused = {"LR=0.1": "pass it with --rb-params",  # an estimator parameter's default
               "REFIT_MIN_STEPS=5": "read once, at import",  # TrainConfig.min_steps
               "NO_SUCH=1": "a constant of sklearn_resbuilder.defaults",
               "REFIT_MAX_STRETCH": "expected NAME=VALUE",
               "REFIT_USE_SHARE=most": "not of type float"}
    for pair, message in refused.items():
        with pytest.raises(SystemExit, match=message):
            pareto.set_defaults([pair])
    assert defaults.REFIT_USE_SHARE == 0.9  # a refused value changed nothing
