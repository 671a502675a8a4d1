"""The ResBuilder search (paper Fig. 3): random in, greedy out, MorphNet to the budget.

For each of ``n_morph_steps`` (n_M):

1. ``n_insertions`` (n_Lambda) times: insert a near-identity block at a random
   place ("random in", §3.3: a uniform stage, then a uniform position in it,
   directly after the pooling layer allowed), train With Reg from the current
   weights, then delete every block whose LayerLasso score is under tau_Lambda
   ("greedy out", eq. 6);
2. the MorphNet step (Alg. 1): widths := alive channels, then scaled by the
   largest omega with ``FLOPs <= flop_budget``; blocks whose width reaches 0
   disappear.

Every new architecture is trained With Reg (which drives the search); those
within the budget also No Reg WI (and, with ``retrain_fresh``, the paper's No
Reg RI). An architecture visited before is not trained again. The result is
the No Reg network within the budget with the most parameters among those
within one standard error of the best validation accuracy (:func:`select`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from . import defaults
from .architecture import Architecture
from .augment import flip_invariant
from .candidates import Candidate, CandidatePool, prune, select, selection_se
from .flops import largest_omega
from .inference import valid_logits
from .network import ResBuilderNet, insert_block, remove_blocks, resize
from .progress import SearchCallback, TqdmProgress, format_record
from .records import NO_REG, SearchRecord, new_record, score_record
from .regularizers import alive_widths, block_scores
from .timebudget import SearchTimeBudget
from .timeplan import TimePlan
from .training import TrainConfig, step_seconds, train_variants
from .training_data import TrainingData

__all__ = ["SearchConfig", "SearchResult", "Search", "run_search", "operations",
           # re-exported: their homes are progress and candidates
           "SearchCallback", "TqdmProgress", "format_record",
           "Candidate", "select", "prune", "selection_se"]

@dataclass
class SearchConfig:
    """Settings of the search loop (defaults from :mod:`~sklearn_resbuilder.defaults`);
    training ones in ``train``."""

    flop_budget: float = defaults.FLOP_BUDGET
    n_insertions: int = defaults.N_INSERTIONS
    n_morph_steps: int = defaults.N_MORPH_STEPS
    lasso_threshold: float = defaults.LASSO_THRESHOLD
    max_time: float | None = None
    max_redraws: int = defaults.MAX_REDRAWS
    retrain_fresh: bool = False
    check_removals: bool = True
    #: The MorphNet step rounds widths of at least 4 x this to its multiples; 1: exact.
    width_multiple: int = defaults.WIDTH_MULTIPLE
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class SearchResult:
    """What a search returns: the best network and the whole history."""

    best_architecture: Architecture | None
    best_module: ResBuilderNet | None
    best_step: int | None
    best_variant: str | None
    best_score: float | None
    history: list[SearchRecord]
    search_time: float
    stopped: str | None = None
    #: The operations the time plan left out (their estimated seconds of
    #: training exceeded what ``max_time`` had left): ``{"operation", "step",
    #: "estimated_seconds", "seconds_left"}`` each, in the plan's modelled seconds.
    skipped: list = field(default_factory=list)
    #: Epochs per search training at most (``max_epochs``, "auto" resolved).
    max_epochs: int | None = None


class Search:
    """One run of the search: its state, its operations and its loop.

    :func:`run_search` is the public entry point. The loop follows
    :func:`operations` (the paper's Fig. 3 as a flat list); ``max_time``'s
    questions go to :attr:`budget` (:class:`~sklearn_resbuilder.timebudget.SearchTimeBudget`),
    the networks that can be returned live in :attr:`pool`
    (:class:`~sklearn_resbuilder.candidates.CandidatePool`), and the
    checkpoint, when given, is written after every finished operation.
    """

    def __init__(self, start, data: TrainingData, config: SearchConfig,
                 seed, callbacks, checkpoint=None, state=None, time_plan=None):
        self.starts = _as_starts(start)
        self.config = config
        self.data = data.to(config.train.device)  # once, not per batch
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.callbacks = list(callbacks)
        self.checkpoint = checkpoint
        self.t0 = time.monotonic()
        self.train_config = config.train
        if time_plan is None and config.max_time is not None:
            time_plan = TimePlan(config.max_time)
        if time_plan is not None and time_plan.timer is None:
            time_plan.timer = self._time_step
        self.history: list[SearchRecord] = []
        self.budget = SearchTimeBudget(time_plan, self.history, len(self.data.y_train),
                                       len(self.data.y_valid), config.flop_budget,
                                       config.width_multiple)
        self.visited: set[Architecture] = set()
        self.pool = CandidatePool(len(self.data.y_valid))
        self.plan = operations(config, len(self.starts))
        self.pos = 0  # index in self.plan of the next operation
        self._jump = None  # set by _skip: the index the loop goes on from
        self.inserted = False  # did the last "insert" train a network?
        self.complete = False
        self.elapsed_before = 0.0  # search seconds of earlier, resumed fits
        self.stopped = None
        self.skipped: list[dict] = []  # operations the time plan left out (see _skip)
        self._saved = None  # the last checkpoint written: (meta, tensors)
        self._resume_point = None  # _saved when max_time first left an operation out
        if state is not None:
            self._restore(state)
        else:
            self.train_config = replace(self.train_config, max_epochs=self._max_epochs())
            self.current = ResBuilderNet(self.starts[0], generator=self._torch_gen()).to(
                config.train.device)

    @property
    def time_plan(self) -> TimePlan | None:
        """What ``max_time`` allows (None without it)."""
        return self.budget.plan

    # ---------------------------------------------------------------- helpers
    def _torch_gen(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.rng.integers(2**31 - 1)))

    def _max_epochs(self) -> int:
        """``max_epochs`` of the search's trainings; "auto" sized by the time plan
        (:meth:`SearchTimeBudget.search_epochs`; ``MAX_EPOCHS`` without one)."""
        epochs = self.train_config.max_epochs
        if epochs != "auto":
            return int(epochs)
        return self.budget.search_epochs(self.starts[0],
                                         planned_architectures(self.config, len(self.starts)),
                                         self.train_config.batch_size,
                                         defaults.AUTO_MIN_STEPS, defaults.MAX_EPOCHS)

    def _time_step(self, arch: Architecture, batch_size: int) -> float:
        """The time plan's timer: one training step of ``arch`` as trained here."""
        return step_seconds(arch, self.data, replace(self.train_config, batch_size=batch_size))

    def training_seconds(self, arch: Architecture, n_trainings: int) -> float | None:
        """Estimated seconds of ``n_trainings`` trainings of ``arch`` (see
        :meth:`SearchTimeBudget.training_seconds`)."""
        return self.budget.training_seconds(arch, n_trainings, self.train_config.batch_size)

    def _skip(self, operation: str, estimate: float, *, stop: bool) -> None:
        """Leave out ``operation``: its training (estimated at ``estimate``
        seconds) would not fit in the plan's time. ``stop``: end the search
        (what is left of ``max_time`` goes to the refit); else skip the rest
        of this MorphNet cycle and go on with its MorphNet step."""
        skipped = self.budget.skipped(operation, len(self.history), estimate)
        self.skipped.append(skipped)
        if self._resume_point is None:
            self._resume_point = self._saved
        for cb in self.callbacks:
            cb.on_skip(skipped)
        if stop:
            self.stopped = "max_time"
        else:
            self._jump = self.plan.index("morph", self.pos + 1)

    def _variants(self, arch: Architecture) -> tuple:
        """What to train: No Reg only within the budget (nothing else can be chosen)."""
        if arch.flops() > self.config.flop_budget:
            return ("with_reg",)
        return ("with_reg", "no_reg_wi") + (("no_reg_ri",) if self.config.retrain_fresh else ())

    def visit(self, net: ResBuilderNet, operation: str, *, omega=None, removed=(),
              inserted=None) -> bool:
        """Train ``net``'s architecture, record it, move the search on.

        An architecture visited before is not trained again: its record is
        repeated with ``reused_from`` set, and the search goes on from ``net``.
        Returns False on collapse (the search stays at the previous network).
        """
        t = time.perf_counter()
        arch = net.architecture
        step = len(self.history)
        record = new_record(step, operation, arch, self.config.flop_budget, omega=omega,
                            removed=removed, inserted=inserted)
        earlier = self._first_visit(arch)
        if earlier is not None:
            record["reused_from"] = earlier["step"]
            record["scores"] = copy.deepcopy(earlier["scores"])
            record["candidates"] = []  # the earlier record's networks are the candidates
            if min(alive_widths(net, self.train_config.gamma_threshold)[0]) == 0:
                # A MorphNet step's network whose stream was alive only in the
                # blocks it removed (their middles dead, the stem's channels
                # shrunk away): untrained, it cannot be gone on from.
                record["collapsed"] = "all channels of a stream died (|gamma| <= gamma_threshold)"
                self._append(record)
                return False
            self.current = net
            self._append(record)
            return True
        self.visited.add(arch)
        seed = int(self.rng.integers(2**31 - 1))
        # An over-budget network's With Reg training shrinks it to the budget,
        # not past it: unchecked, the pressure grows with width and kills a
        # whole stream (a collapse, a training thrown away; deviation 23).
        # One within the budget keeps a share of its FLOPs (deviation 30).
        over = arch.flops() > self.config.flop_budget
        floor = (self.config.flop_budget if over
                 else defaults.MORPH_FLOOR_SHARE * arch.flops())
        config = replace(self.train_config, flop_floor=floor)
        results = train_variants(net, self.data, config, seed=seed,
                                 variants=self._variants(arch), plan=self.time_plan)
        smallest = min((r.record.get("batch_size", self.train_config.batch_size)
                        for r in results.values()), default=self.train_config.batch_size)
        if smallest < self.train_config.batch_size:  # out of memory: keep it halved
            self.train_config = replace(self.train_config, batch_size=smallest)
        collapsed = record["collapsed"] = collapse_reason(results,
                                                          self.train_config.gamma_threshold)
        record["scores"] = {v: score_record(r.record) for v, r in results.items()}
        if collapsed is None:
            self.current = results["with_reg"].module
        # A With Reg training that lost a stream ends its branch (the search
        # goes on from the network before), but a No Reg training of it that
        # recovered is a finished, working network within the budget: it stays
        # a candidate (docs/algorithm.md, deviation 27). A diverged one does not.
        record["candidates"] = []
        if record["within_budget"] and not (collapsed or "").startswith("diverged"):
            for v in NO_REG:
                if v in results and _usable(results[v], self.train_config.gamma_threshold):
                    self.pool.offer(results[v].record["valid_accuracy"], record["flops"],
                                    record["n_params"], step, v, results[v].module)
                    record["candidates"].append(v)
        record["seconds"] = time.perf_counter() - t
        self._append(record)
        return collapsed is None

    def _first_visit(self, arch: Architecture):
        """The record that trained ``arch``, or None if it was never trained."""
        if arch not in self.visited:
            return None
        for r in self.history:
            if r.get("reused_from") is None and Architecture.from_dict(r["architecture"]) == arch:
                return r
        return None

    def _append(self, record: SearchRecord) -> None:
        self.history.append(record)
        for cb in self.callbacks:
            cb.on_record(record)

    # ------------------------------------------------------------ operations
    def start(self) -> None:
        """Train the next start network; the search goes on from the best one.

        With several starts (the plan's first operations), each is trained
        from its own init and the search goes on from the one with the best
        validation accuracy (the first on a tie); every one within the budget
        is a candidate. A start the time plan has no room for ends the search
        (the first is always trained; the refit gets the time). With ``augment="auto"``, the first
        start's training decides the flips for all that follow.
        """
        i = self.pos  # the starts are the plan's first operations
        before = self.current
        if i == 0:
            net = self.current
        else:
            net = ResBuilderNet(self.starts[i], generator=self._torch_gen()).to(
                self.train_config.device)
            if (self.pool and self.time_plan is not None
                    and net.architecture not in self.visited):
                estimate = self.training_seconds(net.architecture,
                                                 len(self._variants(net.architecture)))
                if not self.budget.can_finish(estimate):
                    self._skip("start", estimate, stop=True)
                    return
        ok = self.visit(net, "start")
        if i > 0 and not (ok and self._start_score(self.history[-1]) > max(
                (self._start_score(r) for r in self.history[:-1] if r["operation"] == "start"),
                default=-math.inf)):
            self.current = before  # an earlier start was at least as good
        if i == len(self.starts) - 1 and all(
                r["collapsed"] for r in self.history if r["operation"] == "start"):
            self.stopped = "collapsed at start"
        elif i == 0 and ok and self.train_config.augment == "auto":
            # Trained with shifts only: do mirrored images keep their class?
            self.budget.charge_eval(self.current.architecture, self.train_config.batch_size,
                                    passes=2)
            check = flip_invariant(self.current, self.data, self.train_config.device)
            self.train_config = replace(self.train_config,
                                        augment=True if check["flip"] else "shift")
            self.history[0]["augment"] = {**check, "chosen": self.train_config.augment}

    @staticmethod
    def _start_score(record: SearchRecord) -> float:
        """A start's validation accuracy (its best variant; -inf if it collapsed)."""
        if record["collapsed"]:
            return -math.inf
        accs = [sc.get("valid_accuracy") for sc in record["scores"].values()]
        return max((a for a in accs if a is not None), default=-math.inf)

    def insert(self) -> bool:
        """Random in (§3.3); False if no unvisited insertion was found."""
        arch = self.current.architecture
        for _ in range(self.config.max_redraws):
            stage = int(self.rng.integers(arch.n_stages))
            position = int(self.rng.integers(len(arch.stages[stage].blocks) + 1))
            new = arch.insert_block(stage, position)
            if new not in self.visited:
                break
        else:
            return False
        # With max_time: no training whose result could not be used before
        # max_time (deviation 17); the refit gets the time instead.
        if self.pool and self.time_plan is not None:
            skip = self.budget.insertion_skip(new, len(self._variants(new)), arch,
                                              "morph" in self.plan[self.pos + 1:],
                                              self.train_config.batch_size)
            if skip is not None:
                self._skip("insert", skip[0], stop=skip[1])
                return False
        net = insert_block(self.current, stage, position, generator=self._torch_gen())
        return self.visit(net, "insert", inserted=(stage, position))

    def greedy_out(self) -> None:
        """Delete the blocks the data does not need (eq. 6, with a check).

        A block goes if its score is under tau_Lambda (the paper's rule), or
        if removing it, without retraining, raises the mean validation loss
        by no more than its standard error (the score only orders the
        candidates, lowest first; each removal is measured on the network
        left by the ones before). So a block can go whenever it stops being
        needed, not only right after its insertion.
        """
        if self.budget.out_of_time():
            return
        net, drop = _confirmed_removals(self.current, self._valid_losses,
                                        self.config.lasso_threshold, self.config.check_removals)
        if drop and min(alive_widths(net, self.train_config.gamma_threshold)[0]) == 0:
            # The blocks carried a stream whose other channels are dead (a
            # floored training can shrink the stem instead of a block): without
            # them the network has collapsed, so they stay.
            return
        if drop:
            self.visit(net, "remove", removed=drop)

    def _valid_losses(self, net: ResBuilderNet) -> torch.Tensor:
        """Per-image validation cross entropy of ``net`` (eval mode), charged to the
        plan at the current network's speed (``net`` is it or a part of it)."""
        self.budget.charge_eval(self.current.architecture, self.train_config.batch_size)
        logits = valid_logits(net, self.data, self.train_config.device)
        return torch.nn.functional.cross_entropy(logits, self.data.y_valid.to(logits.device),
                                                 reduction="none")

    def morph(self) -> None:
        """MorphNet step (Alg. 1): alive widths, then the largest omega within budget."""
        net = self.current
        groups, mids = alive_widths(net, self.train_config.gamma_threshold)
        dead = [(s, b) for s, ms in enumerate(mids) for b, m in enumerate(ms) if m == 0]
        if dead:
            net = remove_blocks(net, dead)
            mids = [[m for m in ms if m > 0] for ms in mids]
        alive_arch = net.architecture.with_widths(groups, mids)
        try:
            omega, target = largest_omega(alive_arch, self.config.flop_budget,
                                          multiple=self.config.width_multiple)
        except ValueError:
            # Too deep for the budget even at width 1: drop the weakest blocks.
            # extra is numbered after the dead blocks left; report old numbers.
            back = _parent_ids(self.current, dead, net)
            net, alive_arch, extra = _shallower_for_budget(net, alive_arch, self.config.flop_budget)
            dead = sorted(dead + [back[sb] for sb in extra])
            omega, target = largest_omega(alive_arch, self.config.flop_budget,
                                          multiple=self.config.width_multiple)
        if max(target.group_widths()) < defaults.MIN_MORPH_WIDTH and target.n_blocks:
            back = _parent_ids(self.current, dead, net)
            net, alive_arch, extra = _wider_by_fewer_blocks(
                net, alive_arch, self.config.flop_budget, self.config.width_multiple,
                defaults.MIN_MORPH_WIDTH)
            dead = sorted(dead + [back[sb] for sb in extra])
            omega, target = largest_omega(alive_arch, self.config.flop_budget,
                                          multiple=self.config.width_multiple)
        if (self.pool and self.time_plan is not None and target not in self.visited
                and self.stopped is None):
            estimate = self.training_seconds(target, len(self._variants(target)))
            if not self.budget.can_finish(estimate):
                self._skip("morph", estimate, stop=True)
                return
        net = resize(net, target, generator=self._torch_gen())
        self.visit(net, "morph", omega=float(omega), removed=dead)

    # ------------------------------------------------------------------ loop
    def step(self, op: str) -> None:
        """Run one operation of the plan."""
        if op == "start":
            self.start()
        elif op == "insert":
            self.inserted = self.insert()
        elif op == "greedy_out":
            if self.inserted:  # nothing new was trained since the last greedy out
                self.greedy_out()
        else:
            self.morph()

    def loop(self) -> None:
        """Run the plan from :attr:`pos`; checkpoint after every trained architecture."""
        while self.pos < len(self.plan) and not self.stopped:
            if self.pos > 0 and self.budget.out_of_time():  # the start is always recorded
                self.stopped = "max_time"
                break
            n = len(self.history)
            self.step(self.plan[self.pos])
            self.pos, self._jump = (self.pos + 1 if self._jump is None else self._jump), None
            if len(self.history) > n:
                last = self.history[-1]
                expected = self._variants(Architecture.from_dict(last["architecture"]))
                if self.time_plan is not None and self.budget.cut_short(last, expected):
                    # Not finished work: a later fit trains it again, in full.
                    self.stopped = "max_time"
                    break
                self.save()
        if self.stopped is None and (self.budget.out_of_time() or self.skipped):
            self.stopped = "max_time"  # the plan was cut to fit the time

    def run(self) -> None:
        """The loop, then what ending needs: a network within the budget, the checkpoint."""
        try:
            self.loop()
        except KeyboardInterrupt:
            # Ctrl-C ends the search, not the fit: every finished record is kept
            # (and, with a checkpoint, on disk) and the best network so far returned.
            self.stopped = "interrupted"
            if not self.history:
                raise
        if self.pool.best is None and self.history:
            # Nothing within budget yet: one more MorphNet step makes it fit
            # (quickly after an interrupt or past max_time: nothing left to train).
            if self.stopped == "interrupted":
                if self.budget.plan is None:
                    self.budget.plan = TimePlan(0.0)
                self.budget.plan.exhaust()
            self.morph()
        if self.stopped in (None, "collapsed at start"):
            # Finished: a later fit on the same checkpoint returns this result at once.
            # An early stop is not: the extra MorphNet step above is left out of
            # the checkpoint, and a later fit resumes the plan where it stopped.
            self.complete = True
            self.save()
        elif self.stopped == "max_time":
            self.save_call_end()

    def result(self) -> SearchResult:
        seconds = self.elapsed_before + time.monotonic() - self.t0
        best = self.pool.best
        if best is None:
            return SearchResult(None, None, None, None, None, self.history, seconds,
                                self.stopped, self.skipped, self.train_config.max_epochs)
        return SearchResult(best.module.architecture, best.module, best.step, best.variant,
                            best.accuracy, self.history, seconds, self.stopped, self.skipped,
                            self.train_config.max_epochs)

    # ------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """Write the state after the last finished operation (atomic)."""
        if self.checkpoint is None:
            return
        meta = {
            "history": self.history, "pos": self.pos, "inserted": self.inserted,
            "rng": self.rng.bit_generator.state, "complete": self.complete,
            "stopped": self.stopped, "seed": self.seed,
            "elapsed": self.elapsed_before + time.monotonic() - self.t0,
            "current": self.current.architecture.to_dict(),
            "batch_size": self.train_config.batch_size,
            "max_epochs": self.train_config.max_epochs,
            "augment": self.train_config.augment,
            "skipped": self.skipped,
        }
        if self.time_plan is not None:
            meta["time_plan"] = self.time_plan.state()
        tensors = {"current": _cpu_state(self.current)}
        meta["pool"] = [{"accuracy": c.accuracy, "flops": c.flops, "step": c.step,
                         "variant": c.variant, "architecture": c.module.architecture.to_dict()}
                        for c in self.pool]
        for i, c in enumerate(self.pool):
            tensors[f"pool{i}"] = _cpu_state(c.module)
        self.checkpoint.save(meta, tensors)
        self._saved = (copy.deepcopy(meta), tensors)  # the history list grows on

    def save_call_end(self) -> None:
        """Mark the end of a fit call that ``max_time`` stopped: the next fit
        goes on with a ``max_time`` of its own (after a kill or a Ctrl-C it
        goes on with the plan's time as it was).

        It goes on from the first operation the plan left out, not from the
        end of the plan: the MorphNet steps this call ran after skipping a
        cycle are run again, after the insertions it skipped.
        """
        point = self._resume_point or self._saved
        if self.checkpoint is not None and point is not None:
            meta, tensors = point
            elapsed = self.elapsed_before + time.monotonic() - self.t0
            self.checkpoint.save({**meta, "elapsed": elapsed, "call_ended": True}, tensors)

    def _restore(self, state: dict) -> None:
        device = self.config.train.device
        self.history[:] = state["history"]  # the budget reads the same list
        self.visited = {Architecture.from_dict(r["architecture"]) for r in self.history}
        self.rng.bit_generator.state = state["rng"]
        self.pos, self.inserted = int(state["pos"]), bool(state["inserted"])
        self.complete, self.stopped = bool(state["complete"]), state["stopped"]
        self.elapsed_before = float(state["elapsed"])
        self.skipped = list(state.get("skipped", []))
        if self.time_plan is not None and state.get("time_plan"):
            self.time_plan.restore(state["time_plan"], new_call=bool(state.get("call_ended")))
        # An OOM-halved batch size stays halved.
        self.train_config = replace(self.train_config, batch_size=int(state["batch_size"]),
                                    augment=state.get("augment", self.train_config.augment))
        # The epochs the search began with (checkpoints before "auto": the config's).
        self.train_config = replace(self.train_config, max_epochs=int(
            state["max_epochs"] if "max_epochs" in state else self._max_epochs()))
        self.current = _load_net(state["current"], state["tensors"]["current"], device)
        # Checkpoints before the candidate pool held only the chosen network.
        kept = state.get("pool")
        if kept is None:
            kept = [dict(state["best"], key="best")] if state.get("best") else []
        nets = [_load_net(c["architecture"], state["tensors"][c.get("key", f"pool{i}")], device)
                for i, c in enumerate(kept)]
        self.pool = CandidatePool(len(self.data.y_valid), [
            Candidate(c["accuracy"], c["flops"], net.architecture.n_params(), c["step"],
                      c["variant"], net)
            for c, net in zip(kept, nets)])


def collapse_reason(results, gamma_threshold: float) -> str | None:
    """Why a training collapsed (it diverged, or a whole stream died), or None."""
    wr = results.get("with_reg")
    if wr is None:
        return None
    stopped = wr.record.get("stopped") or ""
    if stopped.startswith("diverged"):
        return stopped
    groups, _ = alive_widths(wr.module, gamma_threshold)
    if min(groups) == 0:
        return "all channels of a stream died (|gamma| <= gamma_threshold)"
    return None


def _usable(result, gamma_threshold: float) -> bool:
    """A No Reg training that may be returned: finite, not diverged, every stream alive."""
    acc = result.record.get("valid_accuracy")
    if acc is None or not math.isfinite(acc):
        return False
    if (result.record.get("stopped") or "").startswith("diverged"):
        return False
    groups, _ = alive_widths(result.module, gamma_threshold)
    return min(groups) > 0


def _confirmed_removals(net: ResBuilderNet, valid_losses, threshold: float, check: bool = True):
    """``(network without the removed blocks, removed (stage, index) of ``net``)``.

    ``valid_losses(net)``: per-image validation losses. ``check=False``: the
    paper's rule alone (score under ``threshold``)."""
    scores = block_scores(net)
    removed: list = []
    current, ids = net, list(net.architecture.block_ids())  # ids: original names, in order
    base = None
    for sb in sorted(scores, key=scores.get):
        i = ids.index(sb)
        candidate = remove_blocks(current, [current.architecture.block_ids()[i]])
        if scores[sb] >= threshold:
            if not check:
                continue
            base = valid_losses(current) if base is None else base
            losses = valid_losses(candidate)
            # One standard error of the validation loss: the smallest change
            # this split can tell apart (the selection's own resolution).
            se = float(base.std()) / math.sqrt(len(base)) if len(base) > 1 else 0.0
            if float(losses.mean() - base.mean()) > se:
                continue  # the data needs this block
            base = losses
        else:
            base = None  # removed unmeasured: measure the next one afresh
        current = candidate
        removed.append(sb)
        del ids[i]
    return current, sorted(removed)


def _cpu_state(module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def _load_net(arch: dict, weights: dict, device) -> ResBuilderNet:
    net = ResBuilderNet(Architecture.from_dict(arch), generator=torch.Generator().manual_seed(0))
    net.load_state_dict(weights)
    return net.to(device)


def _parent_ids(parent, removed, net) -> dict:
    """``{block id in net: its id in parent}``, ``net`` being ``parent`` less ``removed``."""
    survivors = [sb for sb in parent.architecture.block_ids() if sb not in set(removed)]
    return dict(zip(net.architecture.block_ids(), survivors))


def _drop_weakest_blocks(net, alive_arch, enough):
    """Remove the lowest-scoring blocks (eq. 6), one at a time, until
    ``enough(arch)`` or no block is left: ``(net, arch, removed ids)``."""
    scores = block_scores(net)
    removed, arch = [], alive_arch
    for sb in sorted(scores, key=scores.get):
        if enough(arch):
            break
        removed.append(sb)
        arch = alive_arch.remove_blocks(removed)
    return remove_blocks(net, removed), arch, removed


def _shallower_for_budget(net, alive_arch, budget):
    """Remove lowest-scoring blocks until the narrowest net fits ``budget``."""
    net, arch, removed = _drop_weakest_blocks(
        net, alive_arch, lambda a: a.narrowest().flops() <= budget)
    if arch.narrowest().flops() > budget:
        raise ValueError(
            f"flop_budget {budget:,.0f} is below the smallest network of this shape "
            f"({arch.narrowest().flops():,} FLOPs with no blocks and every width 1)")
    return net, arch, removed


def _wider_by_fewer_blocks(net, alive_arch, budget, multiple, min_width):
    """Remove lowest-scoring blocks until the MorphNet step's network has a
    stream at least ``min_width`` wide, or no block is left: the budget then
    buys width instead of depth (docs/algorithm.md, deviation 26)."""
    def wide_enough(arch):
        return max(largest_omega(arch, budget, multiple=multiple)[1].group_widths()) >= min_width
    return _drop_weakest_blocks(net, alive_arch, wide_enough)


def operations(config: SearchConfig, n_starts: int = 1) -> list[str]:
    """Fig. 3 as a flat list of operations, so a checkpoint can say where it stopped:
    the start(s), then n_M times (n_Lambda x (insert, greedy out), morph)."""
    return ["start"] * n_starts + (["insert", "greedy_out"] * config.n_insertions
                                   + ["morph"]) * config.n_morph_steps


def planned_architectures(config: SearchConfig, n_starts: int = 1) -> int:
    """Architectures the plan trains: the starts, then n_M x (n_Lambda insertions
    + one MorphNet step); greedy out trains only when a block dies (not counted)."""
    return n_starts + config.n_morph_steps * (config.n_insertions + 1)


def _as_starts(start) -> list[Architecture]:
    """``start`` as a non-empty list of architectures of one input and class count."""
    starts = [start] if isinstance(start, Architecture) else list(start)
    if not starts or not all(isinstance(a, Architecture) for a in starts):
        raise ValueError(f"start must be an Architecture or a non-empty sequence of them, "
                         f"got {start!r}")
    if len({(a.input_shape, a.n_classes) for a in starts}) > 1:
        raise ValueError("the start architectures differ in input shape or class count: "
                         + ", ".join(f"{a.input_shape}/{a.n_classes}" for a in starts))
    return starts


def run_search(start: Architecture, data: TrainingData, config: SearchConfig | None = None, *,
               seed: int | None = 0, callbacks=(), checkpoint=None,
               resume: dict | None = None, time_plan: TimePlan | None = None) -> SearchResult:
    """Run the ResBuilder search from ``start`` on ``data``.

    Parameters
    ----------
    start : Architecture or sequence of Architecture
        The start network: ``Architecture.minimal`` (RB-0Net),
        ``Architecture.resnet18`` (RB-R18) or any spec. Several: each is
        trained, and the search goes on from the one with the best
        validation accuracy (all within the budget are candidates).
    data : TrainingData
        Training and validation split; the validation split selects the best
        architecture (test data never enters the search).
    config : SearchConfig
    seed : int or None
        Drives every random choice (insertions, inits, shuffling, augmentation).
    callbacks : list of SearchCallback
    checkpoint : SearchCheckpoint, optional
        Written after every trained architecture and when the search ends.
    resume : dict, optional
        A state from ``checkpoint.load()``: the search goes on after its last
        finished architecture, exactly as an uninterrupted run would (same
        ``seed``); a finished search returns its result without training.
    time_plan : TimePlan, optional
        What ``max_time`` allows (made from ``config.max_time`` when not
        given); the search spends its ``search_seconds``. Each training's
        epochs and every "can it finish?" are read off the plan, never the
        wall clock, so a fixed plan gives a fixed search.

    Returns
    -------
    SearchResult
        The No Reg network with ``FLOPs <= flop_budget`` that :func:`select`
        chooses (the most parameters within one standard error of the best
        validation accuracy), its step/variant/validation accuracy, and the
        history. The search ends with an extra MorphNet step when nothing
        visited fits the budget, so the result never exceeds it.
        ``max_time`` stops the search between epochs, and no insertion or
        MorphNet step is started whose estimated training would not end in
        the plan's time (``skipped``); Ctrl-C (``KeyboardInterrupt``) stops it at once;
        either way every finished record is kept and ``stopped`` says why.
    """
    config = config or SearchConfig()
    s = Search(start, data, config, seed, callbacks, checkpoint, resume, time_plan)
    total = planned_architectures(config, len(s.starts))
    for cb in s.callbacks:
        cb.on_search_begin(total)
        if resume is not None:
            cb.on_resume(s.history)
    if not s.complete:
        s.run()
    result = s.result()
    for cb in s.callbacks:
        cb.on_search_end(result)
    return result
