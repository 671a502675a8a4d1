"""Resumable searches: checkpoint_dir (sklearn_resbuilder/checkpoint.py and the
loop in search.py). A resumed search must repeat nothing and end exactly where
an uninterrupted one ends (CPU training is deterministic)."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import sklearn_resbuilder.search as search_mod
from sklearn_resbuilder import ResBuilderClassifier
from sklearn_resbuilder import checkpoint as ckpt_mod
from sklearn_resbuilder.checkpoint import CheckpointError, SearchCheckpoint

N = 400
PARAMS = dict(flop_budget=3e5, n_morph_steps=2, n_insertions=2, max_epochs=2, lr=1e-2,
              refit=False, random_state=0)  # the refit is tested in test_estimator


@pytest.fixture(scope="module")
def data():
    X, y = load_digits(return_X_y=True)
    return X[:N], y[:N]


@pytest.fixture(scope="module")
def clean(data):
    """The uninterrupted search every resumed one must reproduce."""
    return ResBuilderClassifier(**PARAMS).fit(*data)


@pytest.fixture
def count_trainings(monkeypatch):
    """Counts architectures trained (calls of train_variants) in this process."""
    calls = []
    real = search_mod.train_variants

    def counting(net, *args, **kwargs):
        calls.append(net.architecture)
        return real(net, *args, **kwargs)

    monkeypatch.setattr(search_mod, "train_variants", counting)
    return calls


def _strip(history):
    """Records without their timings (everything else must match exactly):
    wall seconds, and the modelled seconds a fit with ``max_time`` adds."""
    timings = ("seconds", "planned_seconds")
    out = []
    for r in history:
        r = {k: v for k, v in r.items() if k != "seconds"}
        if r.get("refit"):
            r["refit"] = {k: v for k, v in r["refit"].items() if k not in timings}
        r["scores"] = {v: {k: x for k, x in s.items() if k not in timings}
                       for v, s in r["scores"].items()}
        out.append(r)
    return out


def _trained(history):
    """Records that trained (a revisited architecture's record reuses the first)."""
    return [r for r in history if r.get("reused_from") is None]


def _ckpts(d):
    return sorted(p.name for p in Path(d).glob("search-*.ckpt"))


def _same_as_clean(clf, clean, data):
    assert _strip(clf.history_) == _strip(clean.history_)
    assert clf.best_step_ == clean.best_step_ and clf.best_variant_ == clean.best_variant_
    assert clf.best_architecture_ == clean.best_architecture_
    np.testing.assert_array_equal(clf.predict_proba(data[0]), clean.predict_proba(data[0]))


def test_checkpointed_fit_equals_a_plain_fit_and_writes_atomically(data, clean, tmp_path):
    clf = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    _same_as_clean(clf, clean, data)
    n = len(clean.history_)
    # The newest two are kept; the final one holds every record.
    assert _ckpts(tmp_path) == [f"search-{n - 1:04d}.ckpt", f"search-{n:04d}.ckpt"]
    assert not list(tmp_path.glob(".*tmp"))
    assert len(json.loads((tmp_path / "history.json").read_text())) == n
    state = SearchCheckpoint(tmp_path, {"data": None, "params": {}}).files()[-1]
    payload = torch.load(state, weights_only=True)  # plain tensors and a JSON string
    meta = json.loads(payload["meta"])
    assert meta["complete"] is True
    # the candidates select() can still choose, each with its weights
    assert 1 <= len(meta["pool"]) <= len(_trained(clean.history_))
    assert set(payload) == {"meta", "current"} | {f"pool{i}" for i in range(len(meta["pool"]))}
    assert clean.best_step_ in {c["step"] for c in meta["pool"]}


def test_a_checkpoint_from_before_the_candidate_pool_resumes(data, clean, tmp_path,
                                                             count_trainings):
    """Checkpoints written by 0.1.0 hold only the chosen network ("best")."""
    ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    path = SearchCheckpoint(tmp_path, {"data": None, "params": {}}).files()[-1]
    payload = torch.load(path, weights_only=True)
    meta = json.loads(payload.pop("meta"))
    chosen = next(i for i, c in enumerate(meta["pool"]) if c["step"] == clean.best_step_)
    old = {"meta": None, "current": payload["current"], "best": payload[f"pool{chosen}"]}
    meta["best"] = meta.pop("pool")[chosen]
    old["meta"] = json.dumps(meta)
    torch.save(old, path)
    first = len(count_trainings)
    again = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path, max_time=1e6).fit(*data)
    assert len(count_trainings) == first  # finished: nothing trained again
    _same_as_clean(again, clean, data)


def test_finished_search_is_restored_without_training(data, clean, tmp_path,
                                                      count_trainings, capsys):
    ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    first = len(count_trainings)
    assert first == len(_trained(clean.history_))
    again = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path, verbose=1,
                                 max_time=1e6).fit(*data)
    assert len(count_trainings) == first  # nothing trained
    _same_as_clean(again, clean, data)
    out = capsys.readouterr().out  # tqdm.write: progress lines go to stdout
    assert f"resumed from a checkpoint with {len(clean.history_)} architectures" in out


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads(1)
    from sklearn.datasets import load_digits
    from sklearn_resbuilder import ResBuilderClassifier
    X, y = load_digits(return_X_y=True)
    params = {params!r}
    ResBuilderClassifier(**params, checkpoint_dir=sys.argv[1]).fit(X[:{n}], y[:{n}])
    print("FINISHED")
""")


def test_sigkill_after_kth_record_then_resume_repeats_nothing(data, clean, tmp_path,
                                                              count_trainings):
    k = 3
    script = tmp_path / "fit.py"
    script.write_text(KILL_SCRIPT.format(params=PARAMS, n=N))
    ckdir = tmp_path / "ck"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(ckdir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while not list(ckdir.glob(f"search-{k:04d}.ckpt")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() - t0 < 240, "no k-th checkpoint in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(json.loads((ckdir / "history.json").read_text()))
    assert k <= done < len(clean.history_)

    # What a writer killed mid-write leaves: removed by the next write; files
    # that are not the search's stay.
    (ckdir / f".search-{done + 1:04d}.ckpt.x1y2.tmp").write_bytes(b"PK half")
    (ckdir / "notes.txt").write_text("mine")
    clf = ResBuilderClassifier(**PARAMS, checkpoint_dir=ckdir).fit(*data)
    assert not list(ckdir.glob(".*.tmp")) and (ckdir / "notes.txt").read_text() == "mine"
    # Exactly the architectures after the last checkpoint were trained.
    assert len(count_trainings) == len(_trained(clean.history_[done:]))
    assert len(clf.history_) == len(clean.history_)
    _same_as_clean(clf, clean, data)


def test_max_time_stop_then_resume_equals_an_uninterrupted_run(data, clean, tmp_path,
                                                              monkeypatch):
    # The time plan runs out as the third architecture starts training (no
    # real timing: the machine is shared). That architecture is cut short, so
    # it is not checkpointed: the next fit trains it again, in full.
    real_train_variants, calls = search_mod.train_variants, []

    def train_variants(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the third architecture's trainings
            plan = kwargs["plan"]
            plan.spent = plan.search_seconds
        return real_train_variants(*args, **kwargs)

    monkeypatch.setattr(search_mod, "train_variants", train_variants)
    first = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path, max_time=1e3).fit(*data)
    assert first.stopped_ == "max_time"
    n = len(first.history_)
    assert len(_trained(first.history_)) == 3
    assert first.history_[-1]["scores"]["with_reg"]["stopped"] == "max_time"
    # Every record but the cut one is checkpointed; the newest checkpoint is
    # marked as the end of a fit that max_time stopped (so the next fit gets
    # a max_time of its own rather than the rest of this one's).
    assert _ckpts(tmp_path) == [f"search-{n - 2:04d}.ckpt", f"search-{n - 1:04d}.ckpt"]
    monkeypatch.undo()
    last = json.loads(torch.load(tmp_path / f"search-{n - 1:04d}.ckpt",
                                 weights_only=True)["meta"])
    assert last["call_ended"] is True and len(last["history"]) == n - 1
    before = last["elapsed"]
    resumed = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path, max_time=1e3).fit(*data)
    assert resumed.stopped_ is None
    _same_as_clean(resumed, clean, data)
    assert resumed.search_time_ > before > 0  # the time of both fits


def test_other_data_or_parameters_are_refused_unless_overwrite(data, tmp_path,
                                                               count_trainings):
    X, y = data
    small = dict(PARAMS, n_morph_steps=0)
    ResBuilderClassifier(**small, checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="different training data"):
        ResBuilderClassifier(**small, checkpoint_dir=tmp_path).fit(X[:-10], y[:-10])
    with pytest.raises(ValueError, match="different parameters: flop_budget=300000.0"):
        ResBuilderClassifier(**{**small, "flop_budget": 4e5},
                             checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="random_state=0 .now 1"):
        ResBuilderClassifier(**{**small, "random_state": 1}, checkpoint_dir=tmp_path).fit(X, y)
    n = len(count_trainings)
    clf = ResBuilderClassifier(**{**small, "flop_budget": 4e5}, checkpoint_dir=tmp_path,
                               overwrite_checkpoint=True).fit(X, y)
    assert len(count_trainings) == n + len(clf.history_)  # a fresh search
    assert clf.flop_budget == 4e5
    # Hardware and reporting settings may change between fits.
    ResBuilderClassifier(**{**small, "flop_budget": 4e5}, checkpoint_dir=tmp_path,
                         verbose=0, max_time=1e6, device="cpu",
                         mixed_precision=False).fit(X, y)
    assert len(count_trainings) == n + len(clf.history_)


def test_a_file_in_place_of_the_directory_is_a_value_error(data, tmp_path):
    f = tmp_path / "not_a_dir"
    f.write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        ResBuilderClassifier(**PARAMS, checkpoint_dir=f).fit(*data)


def test_truncated_newest_checkpoint_falls_back_to_the_previous(data, clean, tmp_path,
                                                                count_trainings):
    ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    names = _ckpts(tmp_path)
    newest = tmp_path / names[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    before = len(count_trainings)
    with pytest.warns(UserWarning, match=f"{names[-1]} is unreadable.*previous one"):
        clf = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    # The previous checkpoint lacks the last record: only that one is trained
    # again (if it trained at all: a revisit reuses its first record).
    assert len(count_trainings) - before == len(_trained(clean.history_[-1:]))
    _same_as_clean(clf, clean, data)


def _third_write_fails(monkeypatch, exc):
    """The third checkpoint write puts out a few bytes, then raises ``exc``."""
    real, writes = torch.save, []

    def save(obj, f, *a, **kw):
        writes.append(1)
        if len(writes) == 3:
            f.write(b"PK\x03\x04 half a file")
            raise exc
        return real(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", save)
    return real


def test_ctrl_c_while_writing_keeps_the_previous_checkpoint(data, tmp_path, monkeypatch):
    real = _third_write_fails(monkeypatch, KeyboardInterrupt)
    clf = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    assert clf.stopped_ == "interrupted"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert _ckpts(tmp_path) == ["search-0001.ckpt", "search-0002.ckpt"]
    monkeypatch.setattr(ckpt_mod.torch, "save", real)
    state = SearchCheckpoint(tmp_path, {"data": None, "params": {}}).files()[-1]
    assert len(json.loads(torch.load(state, weights_only=True)["meta"])["history"]) == 2


def test_full_disk_raises_a_clear_error_and_keeps_the_previous_checkpoint(
        data, clean, tmp_path, monkeypatch):
    real = _third_write_fails(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(CheckpointError, match=r"No space left on device.*search-0002\.ckpt"
                       r".* is kept") as info:
        ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert _ckpts(tmp_path) == ["search-0001.ckpt", "search-0002.ckpt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # Space freed: the next fit resumes and ends like the clean run.
    monkeypatch.setattr(ckpt_mod.torch, "save", real)
    clf = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    _same_as_clean(clf, clean, data)


def test_ctrl_c_during_training_leaves_a_usable_checkpoint(data, clean, tmp_path,
                                                           monkeypatch):
    real = search_mod.train_variants
    calls = []

    def interrupted(net, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(net, *args, **kwargs)

    monkeypatch.setattr(search_mod, "train_variants", interrupted)
    first = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    assert first.stopped_ == "interrupted"
    n = len(first.history_)  # every finished record (3 trained ones) is checkpointed
    assert len(_trained(first.history_)) == 3
    assert _ckpts(tmp_path) == [f"search-{n - 1:04d}.ckpt", f"search-{n:04d}.ckpt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(search_mod, "train_variants", real)
    resumed = ResBuilderClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*data)
    _same_as_clean(resumed, clean, data)
