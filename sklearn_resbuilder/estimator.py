"""``ResBuilderClassifier``: the ResBuilder search behind scikit-learn's classifier API."""

from __future__ import annotations

import copy
import math
import os
import warnings
from dataclasses import fields
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_feature_names, check_is_fitted, column_or_1d

from . import defaults as D
from .allocator import training_malloc
from .architecture import Architecture
from .checkpoint import SearchCheckpoint, data_fingerprint, params_fingerprint
from .data import UINT8_SCALE, check_labels, check_same_shape, to_images, validation_split
from .flops import largest_omega
from .progress import TqdmProgress
from .search import SearchConfig, run_search
from .threads import resolve_threads, torch_threads
from .timeplan import CUT, HARD_STOP_FACTOR, TimePlan, check_plan
from .inference import inference_copy, predict_logits, prepare_batch
from .training import TrainConfig, refit, refit_epochs
from .training_data import TrainingData

#: The named starts (``start``).
_STARTS = {"minimal": Architecture.minimal, "pyramid": Architecture.pyramid,
           "resnet18": Architecture.resnet18}


def resolve_device(device) -> str:
    """``"auto"`` -> ``"cuda"`` when CUDA is available, else ``"cpu"``.

    ``"auto"`` respects ``CUDA_VISIBLE_DEVICES`` (it picks the first visible GPU).
    """
    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine; "
                         "use device='cpu' or 'auto'")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs oneDNN's bfloat16 kernels natively (AVX-512 BF16 or AMX).

    Without them oneDNN emulates bfloat16 (on plain AVX-512 it still reports
    bfloat16 support), slower than float32 or no faster.
    """
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(c is not None and c() for c in checks)


def resolve_mixed_precision(mixed_precision, device) -> bool:
    """``"auto"`` -> bfloat16 autocast on CUDA, and on CPUs with native bfloat16.

    On a CPU with AVX-512 BF16 a training step of the demo's networks runs
    1.1-2x faster (docs/benchmarks.md); elsewhere CPU bfloat16
    is emulated and slower than float32.
    """
    if mixed_precision == "auto":
        kind = torch.device(str(device)).type
        return kind == "cuda" or (kind == "cpu" and cpu_has_native_bf16())
    return bool(mixed_precision)


class ResBuilderClassifier(ClassifierMixin, BaseEstimator):
    """Image classifier that searches a ResNet architecture within a FLOP budget.

    ResBuilder (Burghoff et al.): starting from a minimal net or ResNet18, insert
    near-identity residual blocks at random places, delete blocks that a
    LayerLasso drove to nothing, and let MorphNet's FLOP regularizer resize
    channel widths to the budget. Every visited architecture is trained three
    ways; the best No Reg network within ``flop_budget`` on a validation split
    carved from the training data is kept.

    Parameters
    ----------
    flop_budget : float, default=1e8
        zeta: FLOPs per image the final network may use (conv + dense,
        ``2 kh kw H W c_in c_out`` per conv).
    start : {"auto", "minimal", "pyramid", "resnet18"}, Architecture or list of them, default="auto"
        Start network: the paper's minimal net (RB-0Net), ResNet18 (RB-R18) or
        any spec with this data's input shape and classes. "minimal" is sized
        to the images: 1-D networks (1x3 kernels, poolings sized to the
        length) for images one pixel high or wide, and images of 56 px and
        more average-pooled to 28-55 px first (``Architecture.minimal``).
        "pyramid" is the same net with the width doubled after each pooling
        (16-32-64, ``Architecture.pyramid``), so a block costs the same FLOPs
        in every stage. A named start over ``flop_budget`` is scaled down to
        it before it trains; an Architecture trains as given. A list or tuple
        (e.g. ``("minimal", "pyramid")``): each start is trained, and the
        search goes on from the one with the best validation accuracy; all
        within the budget can be chosen. "auto": "minimal", unless scaled to
        ``flop_budget`` it would be narrower than 8 channels; then "pyramid"
        (its later stages keep the width a flatten head needs), and where
        even the pyramid's stem would be narrower than 8, the pyramid on the
        images average-pooled by 2 (while their shorter side stays at least
        14 px), which spends the budget on width at smaller maps.
    n_insertions : int, default=4
        n_Lambda: block insertions before each MorphNet step.
    n_morph_steps : int, default=7
        n_M: MorphNet steps.
    morph_strength : float, default=1e-7
        lambda_M: MorphNet FLOP regularizer strength.
    lasso_strength : float, default=1e-8
        lambda_Lambda: LayerLasso strength.
    lasso_threshold : float, default=1e-3
        tau_Lambda: blocks scoring below it are deleted.
    gamma_threshold : float, default=1e-2
        tau_M: a channel is alive when its BN |gamma| exceeds it.
    weight_decay : float, default=1e-5
        lambda_0: L2 regularization (Adam's weight decay).
    lr : float, default=1e-3
        Adam learning rate.
    batch_size : int, default=128
        Training batch size (>= 2: BatchNorm needs two samples).
    max_epochs : int or "auto", default="auto"
        Epochs per search training at most (early stopping on validation loss
        may stop sooner). "auto": 20 (the paper's), or with ``max_time`` as
        many as let every planned training of a budget-sized network fit the
        search's share of the time (40 %), at most 20 but at least 250 optimizer steps
        (``max_epochs_``).
    augment : bool or {"auto", "shift", "flip"}, default="auto"
        Training augmentation. "auto": 10 % random shifts, plus horizontal
        flips only if the data is mirror-invariant (decided after the start
        network's training: mirrored validation images must keep their
        accuracy within two standard errors; see ``history_[0]["augment"]``).
        True = shifts and flips (the paper's), "shift" or "flip" alone,
        False none.
    validation_fraction : float, default=0.1
        Stratified share of the training data that selects the architecture.
    refit : bool, default=True
        After the search, train the chosen network on all of ``X`` (training
        and validation images), from its search weights, penalties off, with a
        one-cycle schedule (10 % warm-up to 3 x ``lr``, cosine to 0) for as
        many epochs as its best search training took (at least 2 and at least
        600 optimizer steps). ``module_`` is then that network; how it was
        trained is in ``refit_``. False: ``module_`` is the search's network.
    retrain_fresh : bool, default=False
        Also train every architecture within the budget from a fresh init
        (the paper's No Reg RI variant). Off by default: measured, it won
        none of 49 architectures in 5 searches and took 27-33 % of the time.
    width_multiple : int, default=8
        The MorphNet step rounds every width of at least
        ``4 * width_multiple`` (32 for 8) to a multiple of it (the budget
        still holds); narrower widths stay exact. Convolutions run in channel
        blocks of 8 or 16, so odd widths step slower per FLOP, and rounding
        narrow widths gives up FLOPs that cost accuracy (docs/algorithm.md,
        deviations 18 and 19). 1: the paper's exact widths.
    image_shape : tuple, default=None
        How flat rows ``(n, D)`` become images: ``(H, W)``, ``(C, H, W)`` or
        ``(H, W, C)``, one entry may be -1. None infers a square (1 channel) or
        3 x a square (RGB, channel-last).
    device : str, default="auto"
        "auto" (CUDA when available), "cpu" or "cuda[:i]".
    n_jobs : int, default=None
        Torch threads for ``fit`` and ``predict`` (on a CPU), set for the call
        and restored after. None: in your own process, torch's current
        setting (``torch.set_num_threads``, else every core); inside a
        parallel worker (``GridSearchCV(n_jobs=k)``, ``cross_val_score``,
        joblib, Dask, Ray: a child process or a thread other than the main
        one), one thread, so that k parallel fits do not crowd the cores.
        -1 uses every core, -2 all but one.
    max_time : float, default=None
        Time of ``fit`` in seconds (per call), turned into a plan: each
        network shape's training step is timed once, and every training
        runs the epochs the plan's modelled time left holds, so the wall
        clock never decides an epoch (``plan_``; docs/user_guide.md, "Same
        seed, same model under max_time"). The best network found so far is
        kept, and no insertion or MorphNet step is started whose estimated
        training would not fit (``skipped_``). With ``refit``, the search
        gets 40 % of it and the refit the rest (time the search left over
        stretches the refit, up to 8x its planned epochs). A training still
        running at 1.5 x ``max_time`` on the wall clock stops with a
        warning. With ``checkpoint_dir``, the next ``fit`` goes on where
        this one stopped.
    plan : dict, default=None
        A fitted estimator's ``plan_``: the fit replays that time plan (its
        ``max_time``, step times and stops; with ``n_jobs=None`` its thread
        count), timing nothing, and so repeats that fit exactly on the same
        machine kind and precision. A ``ValueError`` names what does not
        match (another ``max_time``, a shape the plan never timed).
    checkpoint_dir : str or path-like, default=None
        Directory for a resumable search: after every trained architecture the
        history, the random state and the current and best weights are written
        there atomically (``search-NNNN.ckpt``, the newest two kept, plus a
        readable ``history.json``). ``fit`` with the same directory, data and
        parameters resumes after the last finished architecture and repeats
        no finished one (the one in progress, or cut short by ``max_time``, is
        trained again, in full); a finished search is restored without
        training. Other data or
        parameters raise a ``ValueError`` (``verbose``, ``max_time``, ``device``
        and ``mixed_precision`` may change between calls). Give each fit its
        own directory: not for use inside cross-validation.
    overwrite_checkpoint : bool, default=False
        Discard a checkpoint in ``checkpoint_dir`` that belongs to other data
        or parameters instead of raising.
    mixed_precision : bool or "auto", default="auto"
        Train under ``torch.autocast`` with bfloat16 (weights, penalties and
        the loss stay float32). "auto" turns it on for CUDA devices and for
        CPUs with native bfloat16 (AVX-512 BF16 or AMX: see
        :func:`cpu_has_native_bf16`), where a training step of an 8-30
        MFLOP network runs 1.1-2x faster; smaller networks gain nothing.
        Prediction always runs in float32, so a model trained either way
        predicts alike on any machine.
    random_state : int, RandomState instance or None, default=None
        Seeds every random choice (validation split, insertions, inits,
        shuffling, augmentation). On a CPU the same seed gives the same
        ``history_`` and model; CUDA kernels are not bitwise reproducible.
    verbose : int, default=0
        0 silent, 1 a progress bar and a line per architecture, 2 also a bar
        per training.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The labels seen in ``fit``, sorted; ``predict`` returns these.
    n_features_in_ : int
        Values per image, ``C * H * W``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of ``X`` in ``fit``; set only when ``X`` was a
        DataFrame with string column names (checked again at predict time).
    input_shape_ : tuple
        ``(C, H, W)`` of the training images.
    best_architecture_ : Architecture
        The chosen network; ``best_architecture_.flops() <= flop_budget``.
    best_step_ : int
        Its index in ``history_``.
    best_variant_ : {"no_reg_wi", "no_reg_ri"}
        Which No Reg training of that architecture ``module_`` is: from the
        With Reg weights (WI) or from a fresh init (RI).
    best_score_ : float
        Its validation accuracy in the search (the images the refit then
        also trains on: the refit network has no held-out score). Among
        networks within one standard error of the best accuracy, the one
        with the most parameters is chosen.
    refit_ : dict or None
        How ``module_`` was refit (``epochs``, ``planned_epochs``,
        ``n_images``, ``schedule``, ``lr``, ``label_smoothing``,
        ``train_loss``, ``seconds``, ``stopped``, ``used``); None with ``refit=False``. ``used`` is False
        when ``max_time`` cut the refit before 90 % of its epochs
        (``defaults.REFIT_USE_SHARE``): ``module_`` is then the search's
        network. Also stored as ``history_[best_step_]["refit"]``.
    history_ : list of dict
        One JSON-serialisable record per visited architecture; its keys are
        documented by :class:`~sklearn_resbuilder.records.SearchRecord`.
    module_ : torch.nn.Module
        The trained best network (on CPU), without preprocessing: the refit
        one with ``refit=True``.
    input_mean_, input_std_ : ndarray of shape (C,)
        Standardisation applied before ``module_`` (after uint8 -> [0, 1]).
    search_time_ : float
        Seconds spent in the search.
    n_threads_ : int
        Torch threads the fit ran with (see ``n_jobs``).
    stopped_ : str or None
        Why the search ended early: "max_time", "interrupted" (Ctrl-C during
        ``fit``, which then returns the best network so far) or "collapsed at
        start"; None if it ran all its steps.
    plan_ : dict or None
        With ``max_time`` or ``plan``: the time plan this fit followed
        (JSON-serialisable; saved with the model): ``max_time``,
        ``search_seconds``, ``step_seconds`` (per shape and batch size),
        ``hard_stops``, ``context`` (device, precision, threads),
        ``planned_seconds`` and ``wall_seconds``. Pass it as ``plan`` to
        replay the fit. None without ``max_time``.
    skipped_ : list of dict
        With ``max_time``: the operations the search left out because their
        estimated training time (from the search's own seconds per epoch)
        would not have fitted in the search's share of ``max_time`` (the
        plan's modelled seconds), each
        ``{"operation": "insert" or "morph", "step", "estimated_seconds",
        "seconds_left"}``. A skipped insertion moves on to its cycle's
        MorphNet step if that one still fits, else it ends the search; a
        skipped MorphNet step ends the search. The refit gets the time.
    max_epochs_ : int
        Epochs per search training at most: ``max_epochs``, or what "auto"
        resolved to.
        Empty without ``max_time``.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = ResBuilderClassifier(flop_budget=2e5, n_morph_steps=1, n_insertions=1,
    ...                            max_epochs=2, random_state=0).fit(X, y)
    >>> clf.best_architecture_.flops() <= 2e5
    True
    """

    _parameter_constraints: dict = {
        "flop_budget": [Interval(Real, 0, None, closed="neither")],
        "start": [StrOptions(set(_STARTS) | {"auto"}), Architecture, list, tuple],
        "n_insertions": [Interval(Integral, 0, None, closed="left")],
        "n_morph_steps": [Interval(Integral, 0, None, closed="left")],
        "morph_strength": [Interval(Real, 0, None, closed="left")],
        "lasso_strength": [Interval(Real, 0, None, closed="left")],
        "lasso_threshold": [Interval(Real, 0, None, closed="left")],
        "gamma_threshold": [Interval(Real, 0, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        # BatchNorm needs two samples per batch in training.
        "batch_size": [Interval(Integral, 2, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "augment": ["boolean", StrOptions({"auto", "shift", "flip"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "refit": ["boolean"],
        "retrain_fresh": ["boolean"],
        "width_multiple": [Interval(Integral, 1, None, closed="left")],
        "image_shape": [tuple, list, None],
        "device": [str, torch.device],
        "n_jobs": [Interval(Integral, None, -1, closed="right"),
                   Interval(Integral, 1, None, closed="left"), None],
        "max_time": [Interval(Real, 0, None, closed="neither"), None],
        "plan": [dict, None],
        "checkpoint_dir": [str, os.PathLike, None],
        "overwrite_checkpoint": ["boolean"],
        "mixed_precision": ["boolean", StrOptions({"auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, flop_budget=D.FLOP_BUDGET, start="auto",
                 n_insertions=D.N_INSERTIONS, n_morph_steps=D.N_MORPH_STEPS,
                 morph_strength=D.MORPH_STRENGTH, lasso_strength=D.LASSO_STRENGTH,
                 lasso_threshold=D.LASSO_THRESHOLD, gamma_threshold=D.GAMMA_THRESHOLD,
                 weight_decay=D.WEIGHT_DECAY, lr=D.LR, batch_size=D.BATCH_SIZE,
                 max_epochs="auto", augment="auto",
                 validation_fraction=D.VALIDATION_FRACTION, refit=True, retrain_fresh=False,
                 width_multiple=D.WIDTH_MULTIPLE, image_shape=None, device="auto",
                 n_jobs=None, max_time=None, plan=None, checkpoint_dir=None,
                 overwrite_checkpoint=False,
                 mixed_precision="auto", random_state=None, verbose=0):
        self.flop_budget = flop_budget
        self.start = start
        self.n_insertions = n_insertions
        self.n_morph_steps = n_morph_steps
        self.morph_strength = morph_strength
        self.lasso_strength = lasso_strength
        self.lasso_threshold = lasso_threshold
        self.gamma_threshold = gamma_threshold
        self.weight_decay = weight_decay
        self.lr = lr
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.augment = augment
        self.validation_fraction = validation_fraction
        self.refit = refit
        self.retrain_fresh = retrain_fresh
        self.width_multiple = width_multiple
        self.image_shape = image_shape
        self.device = device
        self.n_jobs = n_jobs
        self.max_time = max_time
        self.plan = plan
        self.checkpoint_dir = checkpoint_dir
        self.overwrite_checkpoint = overwrite_checkpoint
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Search an architecture on ``(X, y)`` and keep the best trained network.

        Parameters
        ----------
        X : array-like of shape (n, D), (n, H, W), (n, H, W, C) or (n, C, H, W)
            Images; uint8 (0-255) or floats. Flat rows need a square width, 3 x
            a square, or ``image_shape``.
        y : array-like of shape (n,)
            Labels of any type.

        Returns
        -------
        self
        """
        self._validate_params()
        if self.plan is not None:
            check_plan(self.plan)
            if self.max_time is not None and float(self.max_time) != self.plan["max_time"]:
                raise ValueError(
                    f"max_time={self.max_time} but the plan was made for max_time="
                    f"{self.plan['max_time']}: pass max_time=None (or the plan's) to replay it")
        threads = resolve_threads(self.n_jobs)
        if self.plan is not None and self.n_jobs is None:
            # A replay runs with the threads it was recorded with: the thread
            # count changes CPU float sums, so the model (docs/user_guide.md).
            threads = int(self.plan.get("context", {}).get("n_threads", threads))
        with torch_threads(threads), training_malloc():
            self._fit(X, y)
        self.n_threads_ = threads
        return self

    def _search_config(self, device: str, precision: bool) -> SearchConfig:
        """The configs from this estimator's parameters, matched by name: the
        parameters are the settings' one source (``max_time`` reaches the
        search as its time plan, not through the config)."""
        params = self.get_params(deep=False)

        def pick(cls, **resolved):
            names = {f.name for f in fields(cls)} - {"max_time"}
            return cls(**{n: params[n] for n in names if n in params} | resolved)

        return pick(SearchConfig, flop_budget=float(self.flop_budget),
                    train=pick(TrainConfig, device=device, mixed_precision=precision))

    def _fit(self, X, y):
        _check_feature_names(self, X, reset=True)
        # Channel-last X stays a view (no transposed copy): TrainingData keeps its layout.
        images, input_shape = to_images(X, self.image_shape, keep_channels_last=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        y = column_or_1d(np.asarray(y) if not hasattr(y, "iloc") else y, warn=True)
        classes, y_enc = check_labels(y, len(images))
        device = resolve_device(self.device)
        names = [self._auto_start(input_shape, len(classes)) if name == "auto" else name
                 for name in self._start_list()]
        starts = []
        for name in names:
            arch = self._start_architecture(name, input_shape, len(classes))
            # Fail before training if even the narrowest start net exceeds the budget.
            narrow = arch.remove_blocks(arch.block_ids()).narrowest()
            which = f"start {name!r}: " if len(names) > 1 else ""
            if narrow.flops() > self.flop_budget:
                raise ValueError(
                    f"{which}flop_budget={self.flop_budget:,.0f} is below the smallest network "
                    f"for {input_shape} images ({narrow.flops():,} FLOPs: no blocks, every "
                    "width 1)")
            try:
                starts.append(self._start_within_budget(name, arch))
            except ValueError as e:  # too deep for the budget even at width 1
                raise ValueError(f"{which}{e}") from None
        start = starts[0] if len(starts) == 1 else starts
        rs = check_random_state(self.random_state)
        seed = int(rs.randint(2**31 - 1))
        checkpoint, resume = self._open_checkpoint(images, y_enc, classes)
        if resume is not None:
            seed = int(resume["seed"])  # the same validation split as before
        train_idx, valid_idx = validation_split(y_enc, self.validation_fraction, seed,
                                                classes=classes)
        # The one copy of the data: train and valid in one buffer, in X's layout.
        data = TrainingData.from_split(images, y_enc, train_idx, valid_idx)
        mean, std = data.mean, data.std
        precision = resolve_mixed_precision(self.mixed_precision, device)
        time_plan = self._time_plan(device, precision)
        config = self._search_config(device, precision)
        callbacks = [TqdmProgress()] if self.verbose else []
        result = run_search(start, data, config, seed=seed, callbacks=callbacks,
                            checkpoint=checkpoint, resume=resume, time_plan=time_plan)
        if result.best_module is None:
            self.history_ = result.history  # keep the finished records for inspection
            raise RuntimeError(
                "every training of the search collapsed (diverging loss or all channels "
                f"of a stream dead; see the {len(result.history)} records of the search): "
                "lower morph_strength, lasso_strength or lr")
        best = result.history[result.best_step]["scores"]
        if best[result.best_variant]["epochs"] == 0 and best["with_reg"]["epochs"] == 0:
            warnings.warn(
                f"the search stopped ({result.stopped}) before any architecture within "
                f"flop_budget={self.flop_budget:,.0f} was trained: the returned network "
                "was resized to the budget but not trained since. Raise max_time, or start "
                "from a cheaper network.", UserWarning, stacklevel=2)
        self.classes_ = classes
        self.input_shape_ = input_shape
        self.n_features_in_ = int(math.prod(input_shape))
        self._image_shape_ = self.image_shape
        self._fit_dtype_ = str(images.dtype)  # "uint8" or "float32": the raw scale exports take
        self.input_mean_, self.input_std_ = mean, std
        self.refit_ = None
        module = result.best_module
        if self.refit:
            module, self.refit_ = self._refit(module, data, config.train, result, time_plan,
                                              seed)
            result.history[result.best_step]["refit"] = self.refit_
        self.plan_ = None if time_plan is None else time_plan.to_dict()
        if time_plan is not None and time_plan.hard_stops and not time_plan.replay:
            warnings.warn(
                f"the fit ran past {HARD_STOP_FACTOR:g} x max_time on the wall clock and was "
                f"stopped there ({len(time_plan.hard_stops)} training(s) cut): this machine "
                "ran slower than when the plan timed its steps (load from other work?). "
                "plan_ records the stops, so a replay repeats them.", UserWarning, stacklevel=2)
        # Plain (NCHW) weights: what save, export and users expect; predict_proba
        # runs a channels-last copy (inference_copy).
        self.module_ = module.cpu().to(memory_format=torch.contiguous_format).eval()
        self.best_architecture_ = result.best_architecture
        self.best_step_ = result.best_step
        self.best_variant_ = result.best_variant
        self.best_score_ = result.best_score
        self.history_ = result.history
        self.search_time_ = result.search_time
        self.stopped_ = result.stopped
        self.skipped_ = result.skipped
        self.max_epochs_ = result.max_epochs

    def _time_plan(self, device, precision):
        """The fit's :class:`~sklearn_resbuilder.timeplan.TimePlan` (None without
        ``max_time`` or ``plan``): the search's share, then the refit's."""
        if self.max_time is None and self.plan is None:
            return None
        max_time = self.plan["max_time"] if self.plan is not None else float(self.max_time)
        share = 1 - D.REFIT_TIME_SHARE if self.refit else 1.0
        plan = TimePlan(max_time, share, recorded=self.plan)
        context = {"device": str(device), "mixed_precision": bool(precision),
                   "n_threads": int(torch.get_num_threads())}
        if plan.replay and plan.context and plan.context != context:
            warnings.warn(
                f"the plan was recorded with {plan.context} and is replayed with {context}: "
                "the fit follows the same plan, but the model may differ", UserWarning,
                stacklevel=3)
        plan.context = context
        return plan

    def _refit(self, module, data, train_config, result, time_plan, seed):
        """Refit the chosen network on train + validation (see ``refit``)."""
        scores = result.history[result.best_step]["scores"][result.best_variant]
        n_all = len(data.X_train) + len(data.X_valid)
        epochs = refit_epochs(train_config, n_all, max(2, int(scores.get("best_epoch") or 0)))
        slot = None
        if time_plan is not None:
            # As many epochs as the plan's time left holds; a search that ended
            # early leaves the refit more (a longer one-cycle schedule), up to
            # defaults.REFIT_MAX_STRETCH (8x) its planned epochs.
            arch = module.architecture
            per_epoch = time_plan.epoch_seconds(arch, n_all, 0, train_config.batch_size)
            fits = int(max(time_plan.left("fit"), 0.0) // max(per_epoch, 1e-12))
            epochs = max(1, min(fits, D.REFIT_MAX_STRETCH * epochs))
            slot = time_plan.training(per_epoch, epochs, phase="fit")
        res = refit(copy.deepcopy(module), data, train_config, epochs=epochs,
                    seed=seed + 3,  # not a seed any search training used
                    slot=slot)
        record = dict(res.record)
        stopped, done = res.record["stopped"], res.record["epochs"]
        # Cut by the clock near its end, the refit had all but annealed: still
        # better than the search's network (deviation 31). Diverged: never.
        nearly_done = stopped in CUT and done >= D.REFIT_USE_SHARE * epochs
        record["used"] = done > 0 and (stopped is None or nearly_done)
        if stopped is not None or not record["used"]:
            which = ("its learning rate had nearly annealed, so module_ is the refit network"
                     if record["used"] else "module_ is the search's network, not the refit one")
            warnings.warn(f"the refit stopped early ({stopped}, {done} of {epochs} epochs): "
                          f"{which}. Raise max_time.", UserWarning, stacklevel=3)
        return (res.module if record["used"] else module), record

    # Parameters that may change between the fits of one resumable search.
    _RESUME_FREE = ("verbose", "max_time", "plan", "device", "n_jobs", "mixed_precision",
                    "checkpoint_dir", "overwrite_checkpoint")

    def _open_checkpoint(self, images, y_enc, classes):
        """``(SearchCheckpoint, state to resume or None)``; (None, None) without a directory."""
        if self.checkpoint_dir is None:
            return None, None
        fingerprint = {"data": data_fingerprint(images, y_enc, classes),
                       "params": params_fingerprint(self.get_params(deep=False),
                                                    ignore=self._RESUME_FREE)}
        checkpoint = SearchCheckpoint(self.checkpoint_dir, fingerprint,
                                      overwrite=self.overwrite_checkpoint)
        return checkpoint, checkpoint.load()

    def _start_list(self) -> list:
        """``start`` as a list of names and Architectures (checked)."""
        if isinstance(self.start, (str, Architecture)):
            return [self.start]
        starts = list(self.start)
        if "auto" in starts:
            raise ValueError(f"start='auto' picks one start and cannot be listed; list the "
                             f"starts to train each, e.g. ('minimal', 'pyramid'); got "
                             f"{self.start!r}")
        bad = [s for s in starts if not (isinstance(s, Architecture) or s in _STARTS)]
        if not starts or bad:
            raise ValueError(f"start must be one of {sorted(_STARTS)}, an Architecture, or a "
                             f"non-empty list of them; got {self.start!r}")
        if len(set(starts)) < len(starts):
            raise ValueError(f"start lists a start twice: {self.start!r}")
        return starts

    def _auto_start(self, input_shape, n_classes) -> str | Architecture:
        """``start="auto"``: "minimal", or "pyramid" where the minimal net scaled
        to the budget is narrower than ``MIN_MORPH_WIDTH`` (docs/algorithm.md,
        deviation 29). Where the pyramid's stem is narrower than that too,
        the pyramid on the input average-pooled by 2 (an Architecture within
        the budget), halved again while the stem stays too narrow and the
        shorter side would keep ``AUTO_MIN_SIDE`` (deviation 33)."""
        try:
            minimal = self._start_within_budget(
                "minimal", Architecture.minimal(input_shape, n_classes))
            pyramid = self._start_within_budget(
                "pyramid", Architecture.pyramid(input_shape, n_classes))
        except ValueError:  # nothing fits: the minimal net's error says why
            return "minimal"
        if max(minimal.group_widths()) >= D.MIN_MORPH_WIDTH or pyramid.flops() > self.flop_budget:
            return "minimal"
        start, factor = "pyramid", pyramid.stem.downsample
        side = min(pyramid.input_shape[1:])  # 1 for a 1-D signal: never pooled
        while pyramid.stem.width < D.MIN_MORPH_WIDTH and side // (2 * factor) >= D.AUTO_MIN_SIDE:
            # The budget buys width at the smaller maps (docs/algorithm.md, deviation 33).
            factor *= 2
            pyramid = start = self._start_within_budget(
                "pyramid", Architecture.pyramid(input_shape, n_classes, downsample=factor))
        return start

    @staticmethod
    def _start_architecture(start, input_shape, n_classes) -> Architecture:
        if isinstance(start, Architecture):
            if start.input_shape != tuple(input_shape) or start.n_classes != n_classes:
                raise ValueError(
                    f"start architecture is for input {start.input_shape} and "
                    f"{start.n_classes} classes, but the data has {input_shape} "
                    f"images and {n_classes} classes")
            return start
        return _STARTS[start](input_shape, n_classes)

    def _start_within_budget(self, name, start: Architecture) -> Architecture:
        # A start net over the budget is trained With Reg only and cannot be
        # chosen: the search would train up to its first MorphNet step with no
        # candidate (docs/algorithm.md, deviation 22). A named start is scaled
        # down to the budget first; a given Architecture is used as it is.
        if isinstance(name, Architecture) or start.flops() <= self.flop_budget:
            return start
        return largest_omega(start, self.flop_budget, multiple=self.width_multiple)[1]

    # -------------------------------------------------------------- predict
    def _images(self, X) -> np.ndarray:
        check_is_fitted(self)
        _check_feature_names(self, X, reset=False)
        arr = X if hasattr(X, "shape") else np.asarray(X)
        if getattr(arr, "ndim", 0) == 2 and arr.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {arr.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input")
        images, shape = to_images(X, self._image_shape_)
        check_same_shape(shape, self.input_shape_)
        # Pixels are read on the scale of the training images, whatever their
        # dtype now: fitted on uint8, floats count 0..255 too (and vice versa).
        fit_dtype = getattr(self, "_fit_dtype_", None)
        if fit_dtype == "uint8" and images.dtype != np.uint8:
            images = images.astype(np.float32)  # one copy, divided in place
            images /= np.float32(UINT8_SCALE)
        elif fit_dtype is not None and fit_dtype != "uint8" and images.dtype == np.uint8:
            images = images.astype(np.float32)
        return images

    def _predict_device(self) -> str:
        # A model fitted on a GPU predicts on a CPU-only machine.
        want = str(self.device)
        if (want == "auto" or want.startswith("cuda")) and torch.cuda.is_available():
            return "cuda" if want == "auto" else want
        return "cpu"

    @torch.no_grad()
    def predict_proba(self, X):
        """Class probabilities, columns in ``classes_`` order.

        Parameters
        ----------
        X : array-like
            Images in any layout ``fit`` accepts, with the fitted shape.

        Returns
        -------
        ndarray of shape (n, n_classes)
        """
        images = self._images(X)
        device = self._predict_device()
        module = inference_copy(self.module_, device)
        # getattr: estimators pickled before n_jobs existed
        with torch_threads(resolve_threads(getattr(self, "n_jobs", None))):
            logits = predict_logits(module, images, self.input_mean_, self.input_std_, device)
        return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float64)

    def predict(self, X):
        """Predicted labels (from ``classes_``): the most probable class of
        :meth:`predict_proba` for each image.

        Parameters
        ----------
        X : array-like
            Images, as for :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n,)
            Labels of the dtype of ``classes_``.
        """
        proba = self.predict_proba(X)  # checks fitted first: NotFittedError, not AttributeError
        return self.classes_[np.argmax(proba, axis=1)]

    # ------------------------------------------------------------ sklearn glue
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self._predict_device() != "cpu"
        return tags

    def __getstate__(self):
        state = self.__dict__.copy()
        module = state.get("module_")
        if module is not None and next(module.parameters()).device.type != "cpu":
            # Pickles hold CPU weights: a GPU-fitted model loads without CUDA.
            state["module_"] = copy.deepcopy(module).cpu()
        return state

    # ---- export and persistence
    # Thin wrappers: the logic lives in export.py and persistence.py.
    def preprocess(self, X) -> torch.Tensor:
        """``X`` as the tensor ``module_`` takes: float32 ``(N, C, H, W)`` on CPU.

        The same steps as :meth:`predict_proba`: images are read like in
        ``fit`` (flat rows reshaped, channel-last transposed), pixels read on
        the training images' scale (fitted on uint8: any dtype counts 0..255
        and is divided by 255; fitted on floats: values are taken as they
        are, uint8 too), then every channel standardised with ``input_mean_``
        and ``input_std_``. ``softmax(module_(clf.preprocess(X)))`` equals
        ``predict_proba(X)``.

        Parameters
        ----------
        X : array-like
            As in :meth:`predict_proba`.

        Returns
        -------
        torch.Tensor of shape (N, C, H, W), float32
        """
        return prepare_batch(self._images(X), self.input_mean_, self.input_std_, "cpu")

    def to_torch(self, include_preprocessing=True, proba=False):
        """The fitted network as a self-contained ``torch.fx.GraphModule``.

        Its submodules are ``torch.nn`` built-ins only and its code is plain
        torch: ``torch.save`` it and ``torch.load(path, weights_only=False)``
        works where this package is not installed. Eval mode, CPU, its own
        copy of the weights.

        Parameters
        ----------
        include_preprocessing : bool, default=True
            True: the input is ``(N, C, H, W)`` in the raw pixel scale of
            ``fit`` -- values 0..255 (uint8 or float tensors) when fitted on
            uint8 images, else the float scale of the ``X`` given to ``fit``;
            the /255 and standardisation are folded in. False: the input is
            :meth:`preprocess`'s output.
        proba : bool, default=False
            Output probabilities (softmax) instead of logits; either way shape
            ``(N, n_classes)``, columns in ``classes_`` order.

        Returns
        -------
        torch.fx.GraphModule
        """
        from .export import to_torch

        return to_torch(self, include_preprocessing=include_preprocessing, proba=proba)

    def export_onnx(self, path, include_preprocessing=True, proba=False, opset_version=None):
        """Write the network as an ONNX file (``torch.onnx.export``, ``dynamo=True``).

        Input ``"images"``: float32 ``(batch, C, H, W)``, batch dynamic, pixels
        as for :meth:`to_torch`; output ``"logits"`` or ``"probabilities"``.
        The labels (``classes_``) and input description are in the model's
        metadata under ``"sklearn_resbuilder"``. Needs the ``export`` extra
        (``pip install "sklearn-resbuilder[export]"``); raises ``ImportError``
        naming it otherwise.

        Parameters
        ----------
        path : str or path-like
            File to write (conventionally ``*.onnx``).
        include_preprocessing : bool, default=True
            Fold the /255 and standardisation in (raw pixels in), as in
            :meth:`to_torch`.
        proba : bool, default=False
            Output probabilities instead of logits.
        opset_version : int, default=None
            ONNX opset; torch's default when None.

        Returns
        -------
        torch.onnx.ONNXProgram
        """
        from .export import export_onnx

        return export_onnx(self, path, include_preprocessing=include_preprocessing,
                           proba=proba, opset_version=opset_version)

    def export_program(self, path, include_preprocessing=True, proba=False):
        """Write the network with ``torch.export`` (``torch.export.save``, a ``.pt2`` file).

        ``torch.export`` is what PyTorch recommends for deployment now (its
        docs mark TorchScript deprecated in favour of it). Batch dimension
        dynamic; input and output as for :meth:`to_torch`. Load with
        ``torch.export.load(path).module()``.

        Parameters
        ----------
        path : str or path-like
            File to write (conventionally ``*.pt2``).
        include_preprocessing, proba : bool, default=True, False
            As in :meth:`export_onnx`.

        Returns
        -------
        torch.export.ExportedProgram
        """
        from .export import export_program

        return export_program(self, path, include_preprocessing=include_preprocessing,
                              proba=proba)

    def save(self, path, overwrite=False):
        """Save the fitted estimator as plain data in the directory ``path``.

        Writes ``estimator.json`` (parameters, fitted attributes, format
        version, SHA-256 of the other files), ``architecture.json`` and
        ``weights.pt`` (a state dict). Unlike pickle/joblib, loading it runs no
        code from the files. See :mod:`sklearn_resbuilder.persistence`.

        Parameters
        ----------
        path : str or path-like
            Directory to write; created if needed, must be empty unless
            ``overwrite``.
        overwrite : bool, default=False
            Replace a model saved there before.

        Returns
        -------
        pathlib.Path
        """
        from .persistence import save

        return save(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path):
        """Load an estimator written by :meth:`save` (on CPU; no code is executed).

        Raises ``ValueError`` naming the file and problem for a missing,
        truncated, tampered or mismatched file.

        Parameters
        ----------
        path : str or path-like
            The directory :meth:`save` wrote.

        Returns
        -------
        ResBuilderClassifier
            Fitted; ``predict_proba`` gives the same numbers as before saving.
        """
        from .persistence import load

        return load(path, cls)
