"""One home per default: the estimator's signature and the configs agree, and
every estimator parameter that names a setting reaches its config."""

from __future__ import annotations

import inspect
from dataclasses import MISSING, fields

from sklearn_resbuilder import ResBuilderClassifier, defaults
from sklearn_resbuilder.search import SearchConfig
from sklearn_resbuilder.training import TrainConfig

SIGNATURE = inspect.signature(ResBuilderClassifier).parameters


def _shared(cls):
    return [f for f in fields(cls) if f.name in SIGNATURE and f.default is not MISSING]


def test_the_estimator_and_the_configs_share_their_defaults():
    shared = _shared(SearchConfig) + _shared(TrainConfig)
    names = {f.name for f in shared}
    assert {"flop_budget", "n_insertions", "lasso_threshold", "gamma_threshold", "lr",
            "batch_size", "max_epochs", "width_multiple"} <= names
    for f in shared:
        if f.name in ("augment", "device", "mixed_precision", "max_time", "max_epochs"):
            continue  # resolved in fit ("auto"), or reaching the search as a plan
        assert SIGNATURE[f.name].default == f.default, f.name
    assert SIGNATURE["gamma_threshold"].default == defaults.GAMMA_THRESHOLD
    # "auto" resolves to MAX_EPOCHS without max_time (the search's own default).
    assert SIGNATURE["max_epochs"].default == "auto"
    assert TrainConfig().max_epochs == defaults.MAX_EPOCHS


def test_every_setting_reaches_its_config():
    clf = ResBuilderClassifier(flop_budget=123456, n_insertions=2, n_morph_steps=3,
                               morph_strength=2e-7, lasso_strength=3e-8, lasso_threshold=4e-3,
                               gamma_threshold=5e-2, weight_decay=6e-5, lr=7e-3, batch_size=9,
                               max_epochs=11, augment="shift", retrain_fresh=True,
                               width_multiple=4, verbose=0)
    config = clf._search_config("cpu", True)
    assert config.flop_budget == 123456.0 and isinstance(config.flop_budget, float)
    assert (config.n_insertions, config.n_morph_steps, config.lasso_threshold) == (2, 3, 4e-3)
    assert config.retrain_fresh is True and config.width_multiple == 4
    assert config.max_time is None  # max_time is the time plan's
    t = config.train
    assert (t.morph_strength, t.lasso_strength, t.gamma_threshold, t.weight_decay, t.lr,
            t.batch_size, t.max_epochs, t.augment) == (2e-7, 3e-8, 5e-2, 6e-5, 7e-3, 9, 11, "shift")
    assert (t.device, t.mixed_precision) == ("cpu", True)
