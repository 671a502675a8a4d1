"""Writes ``recorded_history.json``: a small search's ``history_`` (seconds left out),
which ``tests/test_estimator.py`` compares a fresh fit against, so that a change
meant to keep behaviour cannot change the search's path unnoticed.

Rerun only when a change of behaviour is intended, and say so in CHANGES.md:
``.venv/bin/python tests/data/make_recorded_history.py``.
"""

import json
from pathlib import Path

import torch
from sklearn.datasets import load_digits

from sklearn_resbuilder import ResBuilderClassifier

#: The fit the record holds: digits 800 images, insert/remove/morph, float32, one thread.
PARAMS = dict(flop_budget=1e5, n_insertions=3, n_morph_steps=1, max_epochs=3, refit=False,
              mixed_precision=False, augment="shift", random_state=0)


def data():
    X, y = load_digits(return_X_y=True)
    return (X[:800] * 16).clip(0, 255).astype("uint8"), y[:800]


def without_seconds(record):
    """A history record without its wall-clock fields (the only ones a rerun changes)."""
    if isinstance(record, dict):
        return {k: without_seconds(v) for k, v in record.items() if k != "seconds"}
    if isinstance(record, list):
        return [without_seconds(v) for v in record]
    return record


def fit_history():
    torch.set_num_threads(1)
    clf = ResBuilderClassifier(**PARAMS).fit(*data())
    return without_seconds(json.loads(json.dumps(clf.history_)))


if __name__ == "__main__":
    out = Path(__file__).with_name("recorded_history.json")
    out.write_text(json.dumps({"params": PARAMS, "history": fit_history()}, indent=1) + "\n")
    print(f"wrote {out}")
