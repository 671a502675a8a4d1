"""Plots of a ResBuilder search (the paper's Fig. 5/7, 6 and 9).

- :func:`plot_search_history`: validation accuracy of the three training
  variants per visited architecture, with the network depth above it;
- :func:`plot_architecture`: one network as a row of layer boxes, blocks new
  relative to another network highlighted;
- :func:`plot_removal_positions`: where in the network blocks were deleted.

matplotlib is optional (``pip install sklearn-resbuilder[plots]``), so it is
imported inside the functions and this module is not imported by the package.
Every function takes ``ax=None`` (draw into that axes instead of a new figure)
and returns the matplotlib ``Figure``.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .architecture import Architecture
from .records import NO_REG, VARIANTS, SearchRecord

__all__ = ["plot_search_history", "plot_architecture", "plot_removal_positions"]

VARIANT_LABELS = {"with_reg": "With Reg", "no_reg_wi": "No Reg WI", "no_reg_ri": "No Reg RI"}


# --------------------------------------------------------------------- helpers
def _pyplot():
    """matplotlib.pyplot, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install sklearn-resbuilder[plots]") from None
    return plt


def _new_or_given(ax, figsize):
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    return ax.figure, ax


def _split_top(ax, size):
    """A new axes above ``ax``, sharing its x axis (works for a user's ``ax`` too)."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    return make_axes_locatable(ax).append_axes("top", size=size, pad=0.12, sharex=ax)


def _history(obj) -> list[SearchRecord]:
    """``history_`` of a fitted classifier, or a history list, checked."""
    if isinstance(obj, (list, tuple)):
        history = list(obj)
    elif hasattr(obj, "history_"):
        history = list(obj.history_)
    elif hasattr(obj, "get_params"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"this {type(obj).__name__} is not fitted yet: call fit "
                             "before plotting its search")
    else:
        raise ValueError("expected a fitted ResBuilderClassifier or a history list "
                         f"(clf.history_), got {type(obj).__name__}")
    if not history:
        raise ValueError("the search history is empty: nothing to plot")
    for i, r in enumerate(history):
        if not isinstance(r, dict):
            raise ValueError(f"history record {i} must be a dict, got {type(r).__name__}")
        if "scores" in r and not isinstance(r["scores"], dict):
            raise ValueError(f"history record {i}: 'scores' must be a dict of variants")
    return history


def _steps(history) -> np.ndarray:
    return np.array([r.get("step", i) for i, r in enumerate(history)], dtype=float)


def _accuracy(record, variant) -> float:
    s = (record.get("scores") or {}).get(variant)
    acc = None if s is None else s.get("valid_accuracy")
    return float("nan") if acc is None else float(acc)


def _architecture(obj, name="arch") -> Architecture:
    """An Architecture from a spec, its dict, or a fitted classifier."""
    if isinstance(obj, Architecture):
        return obj
    if isinstance(obj, dict):
        return Architecture.from_dict(obj)
    best = getattr(obj, "best_architecture_", None)
    if isinstance(best, Architecture):
        return best
    if hasattr(obj, "get_params"):
        from sklearn.exceptions import NotFittedError

        raise NotFittedError(f"this {type(obj).__name__} is not fitted yet: call fit "
                             "before plotting its architecture")
    raise ValueError(f"{name} must be an Architecture, an architecture dict or a fitted "
                     f"ResBuilderClassifier, got {type(obj).__name__}")


def _record_architecture(record, i) -> Architecture:
    if "architecture" not in record:
        raise ValueError(f"history record {i} has no 'architecture'")
    return Architecture.from_dict(record["architecture"])


def _within_budget(record, flop_budget) -> bool:
    if flop_budget is not None and record.get("flops") is not None:
        return record["flops"] <= flop_budget
    return bool(record.get("within_budget", True))


def _n_params(record) -> int:
    if record.get("n_params") is not None:
        return int(record["n_params"])
    if "architecture" not in record:
        return 0
    return Architecture.from_dict(record["architecture"]).n_params()


def _best_of(history, within):
    """The search's rule (:func:`~sklearn_resbuilder.candidates.select`) on a plain
    list: the most parameters within one SE of the best No Reg accuracy within
    the budget, over each record's ``candidates`` (older histories: the No Reg
    trainings of records that did not collapse). Records without ``n_valid``
    (older histories) get no SE margin."""
    from .candidates import Candidate, select

    cands, n_valid = [], None
    for i, r in enumerate(history):
        if not within[i] or ("candidates" not in r and r.get("collapsed")):
            continue
        for v in r.get("candidates", NO_REG):
            acc = _accuracy(r, v)
            if math.isnan(acc):
                continue
            cands.append(Candidate(acc, int(r.get("flops") or 0), _n_params(r), i, v))
            n_valid = n_valid or (r.get("scores", {}).get(v) or {}).get("n_valid")
    best = select(cands, int(n_valid or 10**12))
    return None if best is None else (best.step, best.variant)


# ------------------------------------------------------------ search history
def plot_search_history(clf_or_history, *, flop_budget=None, ax=None):
    """Validation accuracy and depth of every architecture the search visited.

    The paper's Fig. 5/7. The main panel shows one line per training variant
    (With Reg, No Reg WI, No Reg RI); a variant missing from a record (No Reg
    RI is skipped past ``max_time``) leaves a gap. Filled markers are networks
    within the FLOP budget, hollow ones exceed it; a red band marks a collapsed
    training; dotted vertical lines mark MorphNet steps; a star marks the
    chosen network. The panel above shows the depth (residual blocks) per step
    and, at the start, at every MorphNet step and wherever it changed, the
    width of the widest stage (its stream channels, "w=16").

    Parameters
    ----------
    clf_or_history : ResBuilderClassifier or list of dict
        A fitted classifier (its ``history_``, ``flop_budget``, ``best_step_``
        and ``best_variant_`` are used) or a history list. For a list the
        star goes where the search's own rule puts it: the most parameters
        within one standard error of the best No Reg validation accuracy,
        over each record's ``candidates`` within the budget.
    flop_budget : float, optional
        Decides "within budget" from each record's ``flops``; by default the
        classifier's ``flop_budget``, or each record's ``within_budget``.
    ax : matplotlib Axes, optional
        Draw the accuracy panel here (the depth panel is split off its top).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from sklearn_resbuilder.plotting import plot_search_history
    >>> fig = plot_search_history(clf)  # doctest: +SKIP
    >>> fig.savefig("search.png")  # doctest: +SKIP
    """
    history = _history(clf_or_history)
    if flop_budget is None:
        flop_budget = getattr(clf_or_history, "flop_budget", None)
    if flop_budget is not None and (isinstance(flop_budget, bool)
                                    or not isinstance(flop_budget, numbers.Real)
                                    or not flop_budget > 0):
        raise ValueError(f"flop_budget must be a positive number, got {flop_budget!r}")
    fig, ax = _new_or_given(ax, (10, 6))
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    x = _steps(history)
    within = [_within_budget(r, flop_budget) for r in history]
    over = ~np.array(within)
    colors = {"with_reg": "tab:blue", "no_reg_wi": "tab:orange", "no_reg_ri": "tab:green"}

    # Accuracy: one line per variant trained anywhere (No Reg RI is opt-in);
    # NaN (a record without that variant, e.g. No Reg over the budget) breaks it.
    present = [v for v in VARIANTS if any(v in (r.get("scores") or {}) for r in history)]
    for v in present:
        y = np.array([_accuracy(r, v) for r in history])
        ax.plot(x, y, "-", color=colors[v], lw=1.6, label=VARIANT_LABELS[v], gid=v)
        ok = ~np.isnan(y)
        ax.scatter(x[ok & ~over], y[ok & ~over], s=22, color=colors[v], zorder=3,
                   gid=f"{v}:within")
        ax.scatter(x[ok & over], y[ok & over], s=26, facecolors="white",
                   edgecolors=colors[v], linewidths=1.3, zorder=3, gid=f"{v}:over")

    morph = [xi for xi, r in zip(x, history) if r.get("operation") == "morph"]
    for j, xi in enumerate(morph):
        ax.axvline(xi, color="0.45", ls=":", lw=1.2, zorder=1, gid="morph",
                   label="MorphNet step" if j == 0 else None)
    collapsed = [xi for xi, r in zip(x, history) if r.get("collapsed")]
    for j, xi in enumerate(collapsed):
        ax.axvspan(xi - 0.4, xi + 0.4, color="tab:red", alpha=0.18, lw=0, zorder=0,
                   gid="collapsed", label="collapsed training" if j == 0 else None)

    best_step = getattr(clf_or_history, "best_step_", None)
    if hasattr(clf_or_history, "history_") and best_step is not None:
        best = (int(best_step), clf_or_history.best_variant_)
    else:
        best = _best_of(history, within)
    if best is not None:
        i, v = best
        acc = _accuracy(history[i], v)
        if not math.isnan(acc):
            ax.scatter([x[i]], [acc], marker="*", s=320, color="gold", edgecolors="black",
                       linewidths=0.8, zorder=5, gid="best",
                       label=f"chosen: step {int(x[i])}, {VARIANT_LABELS.get(v, v)}")

    handles, labels = ax.get_legend_handles_labels()
    if over.any():
        handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="0.3"))
        labels.append("over the FLOP budget" if flop_budget is None
                      else f"over the budget ({_short(flop_budget)} FLOPs)")
    # Outside the axes: inside, it would hide the lines it explains.
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              framealpha=0.9, borderaxespad=0)
    ax.set_xlabel("step (one per architecture visited)")
    ax.set_ylabel("validation accuracy")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ymin, ymax = ax.get_ylim()
    ax.set_ylim(max(0.0, ymin), min(1.02, ymax + 0.02))

    # Depth panel above, sharing x.
    top = _split_top(ax, "40%")
    depth = np.array([r["n_blocks"] if "n_blocks" in r else _record_architecture(r, i).n_blocks
                      for i, r in enumerate(history)], dtype=float)
    top.plot(x, depth, "-o", color="0.25", ms=3.5, lw=1.4, gid="depth", label="residual blocks")
    for xi in morph:
        top.axvline(xi, color="0.45", ls=":", lw=1.2, zorder=1, gid="morph")
    _label_widths(top, history, x, depth)
    top.set_ylabel("depth\n(blocks)")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_ylim(min(-0.5, depth.min() - 0.5), depth.max() + 1.2)
    top.tick_params(labelbottom=False)
    top.grid(alpha=0.3)
    title = f"ResBuilder search: {len(history)} architectures"
    if flop_budget is not None:
        title += f", FLOP budget {_short(flop_budget)}"
    top.set_title(title, fontsize=10)
    return fig


def _short(x) -> str:
    """1e7 -> "1e7", 2.5e5 -> "2.5e5", 300 -> "300"."""
    text = f"{x:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text


def _label_widths(ax, history, x, depth):
    """Write the widest stage width at the start, at MorphNet steps and where it changes."""
    prev = None
    for i, r in enumerate(history):
        if "architecture" not in r:
            continue
        widest = max(st.width for st in _record_architecture(r, i).stages)
        if i == 0 or r.get("operation") == "morph" or widest != prev:
            ax.annotate(f"w={widest}", (x[i], depth[i]), xytext=(0, 5),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7.5,
                        color="tab:purple", gid="width", zorder=4,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
        prev = widest


# -------------------------------------------------------------- architecture
def _inserted_blocks(arch, previous) -> list[tuple[int, int]]:
    """``(stage, index)`` of the blocks of ``arch`` new relative to ``previous``.

    The rule is in :func:`plot_architecture`'s Notes.
    """
    arch, previous = _architecture(arch), _architecture(previous, "previous")
    if arch.n_stages != previous.n_stages:
        raise ValueError(f"previous has {previous.n_stages} stages but arch has "
                         f"{arch.n_stages}: blocks can only be matched stage by stage")
    new = []
    for s, (cur, old) in enumerate(zip(arch.stages, previous.stages)):
        c, p = cur.blocks, old.blocks
        n, m = len(c), len(p)
        if n <= m:
            continue
        # best[i][j]: most equal widths matching p[:i] into c[:j], in order.
        neg = -1
        best = [[0] * (n + 1)] + [[neg] * (n + 1) for _ in range(m)]
        for i in range(1, m + 1):
            for j in range(i, n + 1):
                skip = best[i][j - 1] if j - 1 >= i else neg
                best[i][j] = max(skip, best[i - 1][j - 1] + (p[i - 1] == c[j - 1]))
        i, j, fresh = m, n, []
        while j > 0:
            if i < j and best[i][j - 1] == best[i][j]:
                fresh.append(j - 1)  # c[j-1] is new (prefer later blocks on ties)
            else:
                i -= 1
            j -= 1
        new += [(s, b) for b in sorted(fresh)]
    return new


def plot_architecture(arch, *, previous=None, ax=None):
    """One network as a row of layer boxes, left (input) to right (head).

    The paper's Fig. 6. Boxes: input, the stem's average downsampling (if
    any), stem conv, stem pooling (if any), then per stage its max-pool
    (stages after the first; 2x2, or 1x2 / 2x1 in a 1-D network, whose stem
    kernel reads 1xk), its 1x1 transition conv
    (if any) and its residual blocks, then the head (flatten or global average,
    then dense). Box height grows with the layer's width; the channel counts
    are written under each box (a block: middle width / stream width). A shaded
    band with "stage s" and its feature-map size groups each stage.

    Parameters
    ----------
    arch : Architecture, dict or fitted ResBuilderClassifier
        The network (a classifier gives its ``best_architecture_``; a dict is
        a history record's ``"architecture"``).
    previous : Architecture or dict, optional
        Highlight the blocks of ``arch`` that are new relative to it (rule in
        the Notes): e.g. the start network, or the record before.
    ax : matplotlib Axes, optional
        Draw into this axes instead of a new figure (its axis is switched off).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Which blocks are new: stage by stage, a stage with ``k`` more blocks than
    in ``previous`` has ``k`` new ones. The old blocks are matched, in order,
    to the positions that keep the most middle widths equal (an inserted block
    has the stream width, surviving ones keep theirs); of equally good
    matchings the later block counts as new. A stage with as many or fewer
    blocks has no new ones (deletions and resizes are not insertions).
    """
    arch = _architecture(arch)
    new = set(_inserted_blocks(arch, previous)) if previous is not None else set()
    boxes = _arch_boxes(arch)
    n_box = len(boxes)
    fig, ax = _new_or_given(ax, (max(6.0, 0.95 * n_box + 1.0), 3.4))
    from matplotlib.patches import FancyBboxPatch, Patch, Rectangle

    maxw = max([arch.stem.width] + [st.width for st in arch.stages]
               + [m for st in arch.stages for m in st.blocks])
    style = {
        "input": ("white", "0.3"), "stem": ("#9ecae1", "#08519c"), "pool": ("0.88", "0.4"),
        "transition": ("#c7e9c0", "#238b45"), "block": ("#fdd0a2", "#a63603"),
        "head": ("#dadaeb", "#54278f"),
    }
    dx, bw = 1.0, 0.74
    spans = {}
    for k, b in enumerate(boxes):
        kind = b["kind"]
        h = 0.5 if b["width"] is None else 0.45 + 1.0 * math.sqrt(b["width"] / maxw)
        is_new = kind == "block" and b["id"] in new
        face, edge = style[kind]
        patch = FancyBboxPatch((k * dx - bw / 2, -h / 2), bw, h,
                               boxstyle="round,pad=0,rounding_size=0.06",
                               facecolor="#fb6a4a" if is_new else face,
                               edgecolor="#99000d" if is_new else edge,
                               lw=2.2 if is_new else 1.0, zorder=2,
                               gid="block new" if is_new else kind)
        ax.add_patch(patch)
        ax.text(k * dx, 0, b["name"], ha="center", va="center", fontsize=7, zorder=3)
        ax.text(k * dx, -0.82, b["note"], ha="center", va="top", fontsize=7, color="0.15")
        if b["stage"] is not None:
            lo, hi = spans.get(b["stage"], (k, k))
            spans[b["stage"]] = (min(lo, k), max(hi, k))
    hw = arch.stage_hw()
    for s, (lo, hi) in sorted(spans.items()):
        ax.add_patch(Rectangle((lo * dx - 0.48, -1.32), (hi - lo) * dx + 0.96, 2.82,
                               facecolor="#4292c6" if s % 2 == 0 else "#41ab5d", alpha=0.09,
                               edgecolor="none", zorder=0, gid="stage"))
        ax.text((lo + hi) / 2 * dx, 1.0, f"stage {s}\n{hw[s][0]}x{hw[s][1]}",
                ha="center", va="bottom", fontsize=8, color="0.2")
    ax.text(-0.5, -1.36, "numbers under the boxes: channels (block: middle / stream width)",
            ha="left", va="top", fontsize=7, color="0.35")
    ax.set_xlim(-0.6, (n_box - 1) * dx + 0.6)
    ax.set_ylim(-1.6, 1.55)
    ax.set_aspect("auto")
    ax.axis("off")
    title = (f"{arch.n_blocks} residual blocks, {arch.flops():,} FLOPs, "
             f"{arch.n_params():,} parameters")
    ax.set_title(title, fontsize=9)
    if new:
        ax.legend(handles=[Patch(facecolor="#fb6a4a", edgecolor="#99000d",
                                 label=f"new block ({len(new)})")],
                  loc="upper right", fontsize=7, framealpha=0.9, bbox_to_anchor=(1.0, 1.12))
    return fig


def _arch_boxes(arch: Architecture) -> list[dict]:
    """The boxes of :func:`plot_architecture`, in forward order."""
    c, h, w = arch.input_shape
    stem = arch.stem

    def hw(size):
        kh, kw = arch.window(size)
        return f"{kh}x{kw}"

    pool = hw(2)
    k = hw(stem.kernel) + (f"/{stem.stride}" if stem.stride > 1 else "")
    boxes = [dict(kind="input", name="input", note=f"{c}x{h}x{w}", width=None, stage=None)]
    if stem.downsample > 1:
        boxes.append(dict(kind="pool", name="avg\npool", note=hw(stem.downsample), width=None,
                          stage=None))
    boxes.append(dict(kind="stem", name=f"conv\n{k}", note=f"{stem.width}", width=stem.width,
                      stage=0))
    if stem.pool:
        boxes.append(dict(kind="pool", name="max\npool", note=pool, width=None, stage=0))
    prev = stem.width
    for s, st in enumerate(arch.stages):
        if s > 0:
            boxes.append(dict(kind="pool", name="max\npool", note=pool, width=None, stage=s))
        if st.transition:
            boxes.append(dict(kind="transition", name="conv\n1x1", note=f"{prev}\u2192{st.width}",
                              width=st.width, stage=s))
        for b, mid in enumerate(st.blocks):
            boxes.append(dict(kind="block", name=f"block\n{s}.{b}", note=f"{mid}/{st.width}",
                              width=max(mid, st.width), stage=s, id=(s, b)))
        prev = st.width
    fh, fw = arch.stage_hw()[-1]
    n_in = prev * fh * fw if arch.head == "flatten" else prev
    boxes.append(dict(kind="head", name=f"{arch.head}\n+dense",
                      note=f"{n_in}\u2192{arch.n_classes}",
                      width=None, stage=None))
    return boxes


# ---------------------------------------------------------- removal positions
def _removals(history) -> list[dict]:
    """Every removed block with its relative depth, in history order.

    A removed ``[stage, block]`` is numbered in the network the removal started
    from: the architecture of the last non-collapsed record before it (a
    collapsed training leaves the search at the network before). Its relative
    depth is ``(k + 0.5) / n``: ``k`` its index among the ``n`` blocks of that
    network in forward order, so the value is the centre of its slot in
    ``[0, 1]`` (0 = input end, 1 = head end; a lone block sits at 0.5).
    """
    out = []
    for i, r in enumerate(history):
        removed = r.get("removed_blocks") or []
        if not removed:
            continue
        before = next((j for j in range(i - 1, -1, -1) if not history[j].get("collapsed")), None)
        if before is None:
            raise ValueError(f"history record {i} removes blocks but no earlier record "
                             "holds the network they were removed from")
        ids = _record_architecture(history[before], before).block_ids()
        for sb in removed:
            sb = tuple(int(v) for v in sb)
            if sb not in ids:
                raise ValueError(f"history record {i} removes block {list(sb)}, which the "
                                 f"network before it (record {before}) does not have")
            k = ids.index(sb)
            out.append({"step": r.get("step", i), "operation": r.get("operation", "?"),
                        "block": sb, "position": (k + 0.5) / len(ids)})
    return out


def plot_removal_positions(history, *, ax=None):
    """Where in the network the search deleted blocks (the paper's Fig. 9).

    Each removed block is placed at its relative depth in the network it was
    removed from, ``(k + 0.5) / n`` for the k-th of n blocks in forward order
    (0 = input end, 1 = head end). The main panel is a histogram of these
    positions (ten bins, stacked by operation: LayerLasso's greedy out
    "remove" and MorphNet's "morph", where a block's width reached 0); the
    strip above shows each removal at its step. When nothing was removed, the
    figure says so.

    Parameters
    ----------
    history : ResBuilderClassifier or list of dict
        A fitted classifier (its ``history_``) or a history list.
    ax : matplotlib Axes, optional
        Draw the histogram here (the strip of steps is split off its top).

    Returns
    -------
    matplotlib.figure.Figure
    """
    history = _history(history)
    removals = _removals(history)
    fig, ax = _new_or_given(ax, (7, 4.6))
    if not removals:
        ax.text(0.5, 0.5, f"no blocks were removed\n({len(history)} architectures visited)",
                ha="center", va="center", transform=ax.transAxes, fontsize=11, gid="empty")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("Removed blocks by relative depth", fontsize=10)
        return fig
    from matplotlib.ticker import MaxNLocator

    ops = [op for op in ("remove", "morph") if any(r["operation"] == op for r in removals)]
    ops += sorted({r["operation"] for r in removals} - set(ops))
    colors = {"remove": "tab:red", "morph": "tab:purple"}
    labels = {"remove": "greedy out (LayerLasso)", "morph": "MorphNet (width 0)"}
    data = [[r["position"] for r in removals if r["operation"] == op] for op in ops]
    ax.hist(data, bins=np.linspace(0, 1, 11), stacked=True, edgecolor="white",
            color=[colors.get(op, "0.5") for op in ops], label=[labels.get(op, op) for op in ops])
    ax.set_xlim(0, 1)
    ax.set_xlabel("relative depth of the removed block (0 = input, 1 = head)")
    ax.set_ylabel("removed blocks")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3, axis="y")

    top = _split_top(ax, "45%")
    pos = np.array([r["position"] for r in removals])
    steps = np.array([r["step"] for r in removals], dtype=float)
    top.scatter(pos, steps, s=30, c=[colors.get(r["operation"], "0.5") for r in removals],
                edgecolors="black", linewidths=0.5, zorder=3, gid="removed")
    top.set_ylabel("step")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_ylim(steps.max() + 0.8, steps.min() - 0.8)  # time runs downwards
    top.tick_params(labelbottom=False)
    top.grid(alpha=0.3)
    top.set_title(f"{len(removals)} removed blocks in {len(history)} architectures",
                  fontsize=10)
    return fig
