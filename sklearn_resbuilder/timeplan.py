"""``max_time`` as a plan in training epochs, not a race against the clock.

With ``max_time`` the fit still has to decide what it can afford: how many
epochs a training may run, whether an insertion and its MorphNet step can
finish, how long the refit is. Read off the wall clock, those decisions
follow the machine's load, and one seed gives different models on an idle
and a busy machine. :class:`TimePlan` makes them from numbers instead:

- each network shape's training step is timed once, when the search first
  needs it (:func:`~sklearn_resbuilder.training.step_seconds`);
- a training's cost is modelled from that step time, the batches per epoch
  and the epochs it ran (:meth:`TimePlan.epoch_seconds`); the plan keeps
  the modelled seconds spent, and every "can it finish?" asks the plan;
- the wall clock stays only as a safety net: a training still running at
  ``HARD_STOP_FACTOR`` x ``max_time`` is stopped between epochs, and the
  stop is recorded (which training, after how many epochs).

The step times and the hard stops are all the plan measures. Passed back
(``ResBuilderClassifier(plan=clf.plan_)``) they are looked up instead of
timed, so the fit repeats exactly: same trainings, same epochs, same model.
"""

from __future__ import annotations

import math
import time

#: Version of the ``plan_`` dict; a plan of another version is refused.
PLAN_VERSION = 1
#: The safety net: a training still running at this multiple of ``max_time``
#: (wall clock) stops after its current epoch. The plan normally ends every
#: training long before; only a machine much slower than when its steps were
#: timed (load that came later) reaches it.
HARD_STOP_FACTOR = 1.5
#: A validation image costs this share of a training image: a forward pass
#: in eval mode, without backward or the optimizer step (about a third).
EVAL_SHARE = 1 / 3
#: Steps :func:`~sklearn_resbuilder.training.step_seconds` runs per timing
#: (warm-up included); charged to the plan when a shape is first used.
TIMING_STEPS = 5


class TimePlan:
    """The time a fit may spend, and what it has spent, in modelled seconds.

    Parameters
    ----------
    max_time : float
        Seconds the whole fit may take.
    search_share : float, default=1.0
        Share of ``max_time`` the search may spend; the refit gets the rest.
    recorded : dict, optional
        A plan from an earlier fit (``plan_``): its step times are used
        instead of timing anything, and its hard stops are repeated.
    timer : callable, optional
        ``timer(arch, batch_size)`` -> seconds of one training step; what
        times a shape the recorded plan does not hold.
    clock : callable, default=time.monotonic
        The safety net's clock.
    """

    def __init__(self, max_time: float, search_share: float = 1.0, *, recorded=None,
                 timer=None, clock=time.monotonic):
        self.max_time = float(max_time)
        self.search_seconds = self.max_time * float(search_share)
        self.timer = timer
        self.clock = clock
        self.replay = recorded is not None
        self.step_seconds: dict[str, float] = {}
        self.hard_stops: list[dict] = []
        self.context: dict = {}  # device, precision, threads: what the timings hold for
        if recorded is not None:
            check_plan(recorded)
            self.step_seconds = {k: float(v) for k, v in recorded["step_seconds"].items()}
            self.hard_stops = [dict(h) for h in recorded.get("hard_stops", [])]
            self.context = dict(recorded.get("context", {}))
        self.spent = 0.0  # modelled seconds of this fit call
        self.n_trainings = 0  # trainings begun in this fit (hard stops name them)
        self.used: set[str] = set()  # shapes whose timing this call was charged for
        self.t0 = clock()

    # ----------------------------------------------------------- the model
    def step(self, arch, batch_size: int) -> float:
        """Seconds of one training step of ``arch`` at ``batch_size``.

        Timed on first use (or read from the recorded plan); the timing's own
        steps are charged once per fit.
        """
        key = shape_key(arch, batch_size)
        if key not in self.step_seconds:
            if self.replay:
                raise ValueError(
                    f"the plan holds no step time for {key}: it was recorded for other "
                    "data or parameters (pass plan=None to time this fit afresh)")
            self.step_seconds[key] = float(self.timer(arch, batch_size))
        seconds = self.step_seconds[key]
        if key not in self.used:
            self.used.add(key)
            self.spent += TIMING_STEPS * seconds
        return seconds

    def epoch_seconds(self, arch, n_train: int, n_valid: int, batch_size: int) -> float:
        """Modelled seconds of one epoch: training batches plus validation images."""
        step = self.step(arch, batch_size)
        return step * (math.ceil(n_train / batch_size) + EVAL_SHARE * n_valid / batch_size)

    def eval_seconds(self, arch, n_images: int, batch_size: int) -> float:
        """Modelled seconds of one eval-mode pass over ``n_images``."""
        return self.step(arch, batch_size) * EVAL_SHARE * n_images / batch_size

    # ---------------------------------------------------------- accounting
    def left(self, phase: str = "search") -> float:
        """Modelled seconds left to the search (``"search"``) or the fit (``"fit"``)."""
        end = self.search_seconds if phase == "search" else self.max_time
        return end - self.spent

    def charge(self, seconds: float) -> None:
        """Count ``seconds`` of modelled work as spent."""
        self.spent += float(seconds)

    def exhaust(self) -> None:
        """Leave the search no time: it trains nothing more (after a Ctrl-C);
        the refit keeps its share."""
        self.spent = max(self.spent, self.search_seconds)

    def training(self, epoch_seconds, max_epochs: int, phase: str = "search") -> "Slot":
        """Begin one training: its :class:`Slot` says how many epochs it may run.

        ``epoch_seconds`` is a number or a callable giving one (called only
        when time is left, so an exhausted plan times nothing).
        """
        left = self.left(phase)
        if left <= 0:
            per_epoch, limit = 0.0, 0
        else:
            per_epoch = float(epoch_seconds() if callable(epoch_seconds) else epoch_seconds)
            limit = int(min(max_epochs, left // per_epoch)) if per_epoch > 0 else max_epochs
        slot = Slot(self, self.n_trainings, limit, per_epoch)
        self.n_trainings += 1
        return slot

    def hard_stop(self, training: int, epochs: int) -> bool:
        """Does the safety net stop training ``training`` after ``epochs`` epochs?

        Replayed: if the recorded plan says so. Recording: if the wall clock
        has passed ``HARD_STOP_FACTOR`` x ``max_time`` (then it is recorded).
        """
        stop = {"training": int(training), "epochs": int(epochs)}
        if self.replay:
            return stop in self.hard_stops
        if self.clock() - self.t0 >= HARD_STOP_FACTOR * self.max_time:
            self.hard_stops.append(stop)
            return True
        return False

    # ------------------------------------------------------------- records
    def to_dict(self) -> dict:
        """The plan as ``plan_`` holds it (JSON-serialisable; replayable)."""
        return {"version": PLAN_VERSION, "max_time": self.max_time,
                "search_seconds": self.search_seconds,
                "step_seconds": dict(self.step_seconds), "hard_stops": list(self.hard_stops),
                "context": dict(self.context),
                "planned_seconds": round(self.spent, 3),
                "wall_seconds": round(self.clock() - self.t0, 3)}

    def state(self) -> dict:
        """What a checkpoint keeps to go on with this plan."""
        return {**self.to_dict(), "spent": self.spent, "n_trainings": self.n_trainings,
                "used": sorted(self.used)}

    def restore(self, state: dict, *, new_call: bool) -> None:
        """Go on with a checkpointed plan.

        Its step times and training count carry over. ``new_call``: the
        checkpointed fit ended (at ``max_time`` or a Ctrl-C), and this fit
        gets its own ``max_time`` from zero; else (a killed fit) the modelled
        seconds already spent carry over too, so the resumed fit makes the
        decisions the uninterrupted one would have made.
        """
        for k, v in state.get("step_seconds", {}).items():
            self.step_seconds.setdefault(k, float(v))
        self.n_trainings = int(state.get("n_trainings", 0))
        known = {json_key(h) for h in self.hard_stops}
        self.hard_stops += [dict(h) for h in state.get("hard_stops", [])
                            if json_key(h) not in known]
        if not new_call:
            self.spent = float(state.get("spent", 0.0))
            self.used = set(state.get("used", []))


#: A training's ``stopped`` when the time ended it before it was done
#: (the reasons :meth:`Slot.stop_reason` gives).
CUT = ("max_time", "hard stop")


class Slot:
    """One training's share of a :class:`TimePlan`: at most ``limit`` epochs."""

    def __init__(self, plan: TimePlan, index: int, limit: int, epoch_seconds: float):
        self.plan, self.index, self.limit, self.epoch_seconds = plan, index, limit, epoch_seconds
        self.charged = False

    def stop_reason(self, epochs: int, max_epochs: int) -> str | None:
        """After ``epochs`` epochs: "max_time" (the plan's limit), "hard stop" or None."""
        if epochs >= max_epochs:
            return None  # complete
        if epochs >= self.limit:
            return "max_time"
        if self.plan.hard_stop(self.index, epochs):
            return "hard stop"
        return None

    def finish(self, epochs: int) -> float:
        """Charge the ``epochs`` run; returns the modelled seconds charged."""
        seconds = epochs * self.epoch_seconds
        if not self.charged:
            self.plan.charge(seconds)
            self.charged = True
        return seconds


def shape_key(arch, batch_size: int) -> str:
    """The plan's name of a network shape at a batch size (its summary line)."""
    return f"{arch.summary()} @ batch {int(batch_size)}"


def json_key(d: dict) -> tuple:
    return tuple(sorted(d.items()))


def check_plan(plan) -> None:
    """A ``ValueError`` naming what is wrong with a ``plan_`` dict, if anything."""
    if not isinstance(plan, dict):
        raise ValueError(f"plan must be a dict from a fitted estimator's plan_, got "
                         f"{type(plan).__name__}")
    if plan.get("version") != PLAN_VERSION:
        raise ValueError(f"plan has version {plan.get('version')!r}; this release reads "
                         f"version {PLAN_VERSION}")
    for key in ("max_time", "search_seconds", "step_seconds"):
        if key not in plan:
            raise ValueError(f"plan lacks {key!r}")
    if not (isinstance(plan["max_time"], (int, float)) and plan["max_time"] > 0):
        raise ValueError(f"plan's max_time must be a positive number, got {plan['max_time']!r}")
    steps = plan["step_seconds"]
    if not isinstance(steps, dict) or not all(
            isinstance(v, (int, float)) and v > 0 and math.isfinite(v) for v in steps.values()):
        raise ValueError("plan's step_seconds must map shapes to positive seconds")
    for h in plan.get("hard_stops", []):
        if not (isinstance(h, dict) and set(h) == {"training", "epochs"}):
            raise ValueError(f"plan's hard_stops entries are {{'training', 'epochs'}}, got {h!r}")
