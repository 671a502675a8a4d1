"""Progress of a search: the callback hooks of :func:`~sklearn_resbuilder.search.run_search`,
a tqdm bar, and the one-line summary of a history record."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .records import SearchRecord
    from .search import SearchResult

class SearchCallback:
    """Progress hooks of :func:`run_search`; override what you need."""

    def on_search_begin(self, total: int) -> None:
        """``total``: the number of architectures the full loop plans to train."""

    def on_resume(self, history: list) -> None:
        """Called after ``on_search_begin`` when a checkpoint was resumed, with
        the records it already holds."""

    def on_record(self, record: SearchRecord) -> None:
        """Called after each architecture is recorded in the history."""

    def on_skip(self, skipped: dict) -> None:
        """Called when ``max_time`` leaves an operation out (see ``SearchResult.skipped``)."""

    def on_search_end(self, result: SearchResult) -> None:
        """Called once with the result."""


class TqdmProgress(SearchCallback):
    """One tqdm bar for the whole search plus a line per trained architecture."""

    def __init__(self, file=None):
        self.file = file

    def on_search_begin(self, total):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc="ResBuilder", unit="arch", file=self.file)

    def on_resume(self, history):
        self.bar.write(f"resumed from a checkpoint with {len(history)} architectures",
                       file=self.file)
        self.bar.update(len(history))

    def on_record(self, record):
        if record["operation"] == "remove":
            self.bar.total += 1  # greedy out trains only when a block dies: unplanned
        self.bar.write(format_record(record), file=self.file)
        self.bar.update(1)

    def on_skip(self, skipped):
        self.bar.write(f"skipped {skipped['operation']}: ~{skipped['estimated_seconds']:.0f} s "
                       f"of training, {skipped['seconds_left']:.0f} s left", file=self.file)

    def on_search_end(self, result):
        self.bar.close()


def format_record(r: SearchRecord) -> str:
    """One line: step, operation, blocks, FLOPs and each variant's accuracy."""
    accs = " ".join(f"{v}={s['valid_accuracy']:.4f}" for v, s in r["scores"].items())
    extra = f" omega={r['omega']:.3g}" if r.get("omega") is not None else ""
    if r.get("removed_blocks"):
        extra += f" removed={r['removed_blocks']}"
    if r.get("collapsed"):
        extra += f" COLLAPSED ({r['collapsed']})"
    return (f"step {r['step']:3d} {r['operation']:<6} blocks={r['n_blocks']:<2d} "
            f"FLOPs={r['flops']:,}{extra} {accs} ({r['seconds']:.1f}s)")
