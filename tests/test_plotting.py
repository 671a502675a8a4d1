"""Plots of the search: drawn elements, PNG output, the ax= path, bad input."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from sklearn_resbuilder import Architecture, ResBuilderClassifier  # noqa: E402
from sklearn_resbuilder.plotting import (  # noqa: E402
    plot_architecture,
    plot_removal_positions,
    plot_search_history,
)

VARIANTS = ("with_reg", "no_reg_wi", "no_reg_ri")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def fitted(digits):
    X_train, _, y_train, _ = digits
    clf = ResBuilderClassifier(flop_budget=2e5, n_morph_steps=2, n_insertions=1,
                               max_epochs=1, random_state=0)
    clf.fit(X_train, y_train)
    assert any(r["operation"] == "morph" for r in clf.history_)
    return clf


# ------------------------------------------------------------------ helpers
def _record(step, op, arch, accs, *, within=True, removed=(), collapsed=None):
    return {
        "step": step, "operation": op, "architecture": arch.to_dict(),
        "n_blocks": arch.n_blocks, "flops": arch.flops(), "within_budget": within,
        "removed_blocks": [list(b) for b in removed], "collapsed": collapsed,
        "scores": {v: {"valid_accuracy": a} for v, a in accs.items()},
    }


def _accs(w, i, r=None):
    out = {"with_reg": w, "no_reg_wi": i}
    if r is not None:
        out["no_reg_ri"] = r
    return out


@pytest.fixture
def history():
    """start, insert, remove (greedy out), insert (collapsed), insert, morph (removes a block)."""
    a0 = Architecture.minimal((1, 8, 8), 10)
    a1 = a0.insert_block(0, 0).insert_block(1, 0)      # blocks (0,0), (1,0)
    a2 = a1.remove_blocks([(0, 0)])                      # (1,0) left
    a3 = a2.insert_block(2, 0)                           # collapsed: search stays at a2
    a4 = a2.insert_block(0, 0).insert_block(2, 0)        # (0,0), (1,0), (2,0)
    a5 = a4.remove_blocks([(2, 0)]).scaled(0.5)
    return [
        _record(0, "start", a0, _accs(0.5, 0.55, 0.52)),
        _record(1, "insert", a1, _accs(0.6, 0.7, 0.65), within=False),
        _record(2, "remove", a2, _accs(0.62, 0.72, 0.66), removed=[(0, 0)]),
        _record(3, "insert", a3, _accs(0.1, 0.1, 0.1), collapsed="diverged"),
        _record(4, "insert", a4, _accs(0.7, 0.9, 0.8), within=False),
        _record(5, "morph", a5, _accs(0.68, 0.8), removed=[(2, 0)]),  # RI missing
    ]


def _check_png(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000


def _by_gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]


def _accuracy_axes(fig):
    return next(ax for ax in fig.axes if _by_gid(ax.get_lines(), "with_reg"))


def _depth_axes(fig):
    return next(ax for ax in fig.axes if _by_gid(ax.get_lines(), "depth"))


# -------------------------------------------------------------- search history
def test_search_history_of_a_real_fit(fitted, tmp_path):
    h = fitted.history_
    fig = plot_search_history(fitted)
    _check_png(fig, tmp_path, "history")
    ax = _accuracy_axes(fig)
    lines = [ln for ln in ax.get_lines() if ln.get_gid() in VARIANTS]
    # No Reg RI is opt-in (retrain_fresh): not trained, not drawn.
    assert [ln.get_gid() for ln in lines] == ["with_reg", "no_reg_wi"]
    assert [ln.get_label() for ln in lines] == ["With Reg", "No Reg WI"]
    for ln, v in zip(lines, ["with_reg", "no_reg_wi"]):
        want = [r["scores"][v]["valid_accuracy"] if v in r["scores"] else np.nan for r in h]
        np.testing.assert_allclose(ln.get_ydata(), want)
    n_morph = sum(r["operation"] == "morph" for r in h)
    assert n_morph >= 1
    assert len(_by_gid(ax.get_lines(), "morph")) == n_morph
    depth = _by_gid(_depth_axes(fig).get_lines(), "depth")[0]
    assert len(depth.get_xdata()) == len(h)
    assert list(depth.get_ydata()) == [r["n_blocks"] for r in h]
    (star,) = _by_gid(ax.collections, "best")
    np.testing.assert_allclose(star.get_offsets(), [[fitted.best_step_, fitted.best_score_]])
    # widest stage width written at the start and at every MorphNet step
    widths = _by_gid(_depth_axes(fig).texts, "width")
    assert len(widths) >= 1 + n_morph
    first = max(s["width"] for s in h[0]["architecture"]["stages"])
    assert widths[0].get_text() == f"w={first}"


def test_search_history_marks_gaps_budget_collapse_and_best(history, tmp_path):
    fig = plot_search_history(history)
    _check_png(fig, tmp_path, "edge")
    ax = _accuracy_axes(fig)
    ri = _by_gid(ax.get_lines(), "no_reg_ri")[0].get_ydata()
    assert np.isnan(ri[5]) and not np.isnan(ri[:5]).any()  # missing variant: a gap
    assert len(_by_gid(ax.patches, "collapsed")) == 1
    # steps 1 and 4 are over budget: hollow markers, one per variant present
    for v in VARIANTS:
        assert len(_by_gid(ax.collections, f"{v}:over")[0].get_offsets()) == 2
        n_within = 3 if v == "no_reg_ri" else 4  # RI is missing at step 5
        assert len(_by_gid(ax.collections, f"{v}:within")[0].get_offsets()) == n_within
    assert len(_by_gid(ax.get_lines(), "morph")) == 1
    # best among within-budget, non-collapsed No Reg: step 5 No Reg WI (0.8);
    # step 4 (0.9) is over budget and step 3 collapsed.
    (star,) = _by_gid(ax.collections, "best")
    np.testing.assert_allclose(star.get_offsets(), [[5, 0.8]])
    assert "step 5, No Reg WI" in star.get_label()


def test_search_history_of_a_plain_list_stars_what_the_search_chose(fitted):
    """For a bare history list the star follows search.select (records carry
    n_valid), so it lands where the fit's own choice did."""
    ax = _accuracy_axes(plot_search_history(list(fitted.history_),
                                            flop_budget=fitted.flop_budget))
    np.testing.assert_allclose(_by_gid(ax.collections, "best")[0].get_offsets(),
                               [[fitted.best_step_, fitted.best_score_]])


def test_search_history_star_takes_the_bigger_net_within_one_se(history):
    """Step 0 (0.85) is the best; step 2 (0.80) has more parameters than any
    other, step 5 (0.80) more FLOPs. With n_valid = 20 (SE at 0.85: 0.08) the
    split cannot tell them apart and step 2 gets the star (parameters before
    FLOPs); without n_valid (an older history) the best accuracy does. The
    records carry no n_params, so it is counted from the architecture."""
    history[0]["scores"]["no_reg_wi"]["valid_accuracy"] = 0.85
    history[2]["scores"]["no_reg_wi"]["valid_accuracy"] = 0.8
    arch = [Architecture.from_dict(r["architecture"]) for r in history]
    assert arch[5].flops() > arch[2].flops() and arch[2].n_params() > arch[5].n_params()
    assert arch[2].n_params() > arch[0].n_params()
    ax = _accuracy_axes(plot_search_history(history))
    np.testing.assert_allclose(_by_gid(ax.collections, "best")[0].get_offsets(), [[0, 0.85]])
    for r in history:
        for v in r["scores"].values():
            v["n_valid"] = 20
    ax = _accuracy_axes(plot_search_history(history))
    np.testing.assert_allclose(_by_gid(ax.collections, "best")[0].get_offsets(), [[2, 0.8]])


def test_search_history_flop_budget_decides_within(history):
    # A budget above every network: nothing is hollow, the star moves to step 4.
    big = max(r["flops"] for r in history) + 1
    ax = _accuracy_axes(plot_search_history(history, flop_budget=big))
    assert all(len(c.get_offsets()) == 0 for c in ax.collections
               if str(c.get_gid()).endswith(":over"))
    np.testing.assert_allclose(_by_gid(ax.collections, "best")[0].get_offsets(), [[4, 0.9]])


def test_search_history_into_given_ax(history):
    fig, ax = plt.subplots()
    assert plot_search_history(history, ax=ax) is ax.figure
    assert _by_gid(ax.get_lines(), "with_reg")  # accuracy drawn into the user's ax
    assert len(fig.axes) == 2  # plus the depth panel split off its top


@pytest.mark.parametrize("bad, match", [
    ([], "history is empty"),
    ("history", "expected a fitted ResBuilderClassifier or a history list"),
    ([1, 2], "record 0 must be a dict"),
])
def test_search_history_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        plot_search_history(bad)


def test_search_history_bad_budget_and_unfitted(history):
    with pytest.raises(ValueError, match="flop_budget must be a positive number"):
        plot_search_history(history, flop_budget=-1)
    with pytest.raises(ValueError, match="not fitted yet"):  # NotFittedError is a ValueError
        plot_search_history(ResBuilderClassifier())


# ---------------------------------------------------------------- architecture
def _boxes(fig):
    return [p for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)]


def _kinds(fig):
    return [p.get_gid() for p in _boxes(fig)]


def test_architecture_boxes_resnet18(tmp_path):
    arch = Architecture.resnet18((1, 28, 28), 10)
    fig = plot_architecture(arch)
    _check_png(fig, tmp_path, "arch")
    kinds = _kinds(fig)
    assert kinds.count("block") == arch.n_blocks == 8
    assert kinds.count("stem") == 1 and kinds.count("head") == 1 and kinds.count("input") == 1
    assert kinds.count("pool") == arch.n_stages - 1
    assert kinds.count("transition") == 3
    assert kinds[0] == "input" and kinds[-1] == "head"
    assert len(_by_gid(fig.axes[0].patches, "stage")) == arch.n_stages
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "128/128" in texts and "64\u2192128" in texts  # block mid/stream, transition
    assert sum(t.startswith("stage ") for t in texts) == arch.n_stages


def test_architecture_stem_pool_box():
    arch = Architecture.resnet18((3, 64, 64), 10)  # ImageNet stem: 7x7/2 + max-pool
    kinds = _kinds(plot_architecture(arch))
    assert kinds.count("pool") == arch.n_stages  # stem pool + one per later stage
    assert kinds[1:3] == ["stem", "pool"]


def test_architecture_1d_labels_say_1x3(tmp_path):
    arch = Architecture.minimal((1, 1, 40), 10).insert_block(1, 0)
    fig = plot_architecture(arch)
    _check_png(fig, tmp_path, "arch_1d")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "conv\n1x3" in texts and texts.count("1x2") == arch.n_stages - 1
    assert not any("3x3" in t or "2x2" in t for t in texts)
    assert "stage 3\n1x5" in texts
    tall = [t.get_text() for t in plot_architecture(Architecture.minimal((1, 40, 1), 10))
            .axes[0].texts]
    assert "conv\n3x1" in tall and "2x1" in tall


def test_architecture_downsampling_box():
    arch = Architecture.minimal((3, 112, 112), 10)
    fig = plot_architecture(arch)
    kinds = _kinds(fig)
    assert kinds[:3] == ["input", "pool", "stem"]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "avg\npool" in texts and "4x4" in texts and "stage 0\n28x28" in texts


def test_architecture_highlights_the_inserted_block(tmp_path):
    prev = Architecture.resnet18((1, 28, 28), 10)
    arch = prev.insert_block(2, 1, width=40)
    fig = plot_architecture(arch, previous=prev)
    _check_png(fig, tmp_path, "arch_new")
    blocks = [k for k in _kinds(fig) if k.startswith("block")]
    assert len(blocks) == arch.n_blocks
    assert blocks.count("block new") == 1
    assert blocks.index("block new") == arch.block_ids().index((2, 1))


@pytest.mark.parametrize("prev_blocks, blocks, expected", [
    ([], [16, 16, 16], [0, 1, 2]),         # from the minimal net: every block is new
    ([8, 12], [8, 16, 12], [1]),           # widths say which one was inserted
    ([16], [16, 16], [1]),                 # tie: the later block counts as new
    ([8, 12], [12], []),                   # a deletion inserts nothing
    ([8, 12], [4, 6], []),                 # a resize inserts nothing
])
def test_architecture_new_block_rule(prev_blocks, blocks, expected):
    from sklearn_resbuilder import Stage, Stem

    def arch(bs):
        return Architecture((1, 8, 8), 10, Stem(3, 16), (Stage(16, tuple(bs)), Stage(16)))

    kinds = [k for k in _kinds(plot_architecture(arch(blocks), previous=arch(prev_blocks)))
             if k.startswith("block")]
    assert [i for i, k in enumerate(kinds) if k == "block new"] == expected


def test_architecture_accepts_dict_and_classifier(fitted):
    arch = fitted.best_architecture_
    fig = plot_architecture(fitted, previous=fitted.history_[0]["architecture"])
    assert _kinds(fig).count("block new") + _kinds(fig).count("block") == arch.n_blocks
    assert _kinds(fig).count("block new") == arch.n_blocks  # the start net has no blocks
    fig2 = plot_architecture(arch.to_dict())
    assert _kinds(fig2) == [k.replace("block new", "block") for k in _kinds(fig)]


def test_architecture_into_given_ax_and_bad_input():
    fig, ax = plt.subplots()
    assert plot_architecture(Architecture.minimal((1, 8, 8), 10), ax=ax) is ax.figure
    # input, stem, two pooling layers, head: the minimal net has no blocks
    assert [p.get_gid() for p in ax.patches if isinstance(p, FancyBboxPatch)] == [
        "input", "stem", "pool", "pool", "head"]
    with pytest.raises(ValueError, match="arch must be an Architecture"):
        plot_architecture(42)
    with pytest.raises(ValueError, match="stages"):
        plot_architecture(Architecture.minimal((1, 8, 8), 10),
                          previous=Architecture.resnet18((1, 28, 28), 10))


# ----------------------------------------------------------- removal positions
def test_removal_positions(history, tmp_path):
    fig = plot_removal_positions(history)
    _check_png(fig, tmp_path, "removal")
    strip = next(c for ax in fig.axes for c in ax.collections if c.get_gid() == "removed")
    pos = strip.get_offsets()
    # step 2 removed (0,0) of a1's 2 blocks: (0 + .5) / 2; step 5 removed (2,0)
    # of a4's 3 blocks (numbered in a4: step 3 collapsed, the search stayed).
    np.testing.assert_allclose(pos, [[0.25, 2], [5 / 6, 5]])
    hist_ax = next(ax for ax in fig.axes if ax.patches)
    heights = [p.get_height() for p in hist_ax.patches]
    assert sum(heights) == 2


def test_removal_positions_of_a_real_fit(fitted):
    n_removed = sum(len(r["removed_blocks"]) for r in fitted.history_)
    fig = plot_removal_positions(fitted)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    strips = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "removed"]
    if n_removed:
        assert len(strips[0].get_offsets()) == n_removed
    else:
        assert any("no blocks were removed" in t for t in texts) and not strips


def test_removal_positions_none_removed(history, tmp_path):
    plain = [dict(r, removed_blocks=[]) for r in history]
    fig, ax = plt.subplots()
    assert plot_removal_positions(plain, ax=ax) is ax.figure
    assert any("no blocks were removed" in t.get_text() for t in ax.texts)
    _check_png(fig, tmp_path, "none")


def test_removal_positions_bad_record(history):
    history[2]["removed_blocks"] = [[2, 0]]  # a1 has no block in stage 2
    with pytest.raises(ValueError, match=r"removes block \[2, 0\]"):
        plot_removal_positions(history)
    with pytest.raises(ValueError, match="empty"):
        plot_removal_positions([])


# ------------------------------------------------------------ optional import
def test_missing_matplotlib_says_how_to_install(monkeypatch, history):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    arch = Architecture.minimal((1, 8, 8), 10)
    for call in (lambda: plot_search_history(history), lambda: plot_architecture(arch),
                 lambda: plot_removal_positions(history)):
        with pytest.raises(ImportError, match=r"pip install sklearn-resbuilder\[plots\]"):
            call()


def test_package_import_does_not_need_matplotlib():
    import subprocess

    code = ("import sys; sys.modules['matplotlib'] = None; import sklearn_resbuilder; "
            "import sklearn_resbuilder.plotting; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
