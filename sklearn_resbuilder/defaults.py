"""The one home of every default setting.

:class:`~sklearn_resbuilder.ResBuilderClassifier`'s signature and the search's
and trainings' configs (:class:`~sklearn_resbuilder.search.SearchConfig`,
:class:`~sklearn_resbuilder.training.TrainConfig`) read their defaults from
here; the functions below them take every value as an argument. The paper's
values are the paper's (§4.1); where ours differ, docs/algorithm.md says why
and with what numbers.
"""

#: FLOPs per image the chosen network may cost (the paper's 1e8 ImageNet-scale budget).
FLOP_BUDGET = 1e8
#: n_Lambda, insertions per MorphNet cycle (paper §4.1).
N_INSERTIONS = 4
#: n_M, MorphNet cycles (paper §4.1).
N_MORPH_STEPS = 7
#: lambda_M, strength of MorphNet's FLOP penalty (paper §4.1; applied as a
#: proximal step, docs/algorithm.md "Penalties under Adam").
MORPH_STRENGTH = 1e-7
#: lambda_Lambda, strength of the LayerLasso penalty (paper §4.1).
LASSO_STRENGTH = 1e-8
#: tau_Lambda, the deletion threshold on a block's LayerLasso score (eq. 6).
LASSO_THRESHOLD = 1e-3
#: A channel is alive while its BN |gamma| exceeds this (MorphNet's default).
GAMMA_THRESHOLD = 1e-2
#: Adam's L2 weight decay (paper §4.1).
WEIGHT_DECAY = 1e-5
#: Adam's learning rate (paper §4.1).
LR = 1e-3
#: Training batch size (paper §4.1).
BATCH_SIZE = 128
#: Epochs per training at most; early stopping ends most sooner (paper §4.1).
MAX_EPOCHS = 20
#: With ``max_time`` and ``max_epochs="auto"``, the search's trainings get as
#: many epochs as let all the planned trainings of budget-sized networks fit
#: the search's share of the time, at most ``MAX_EPOCHS``, but never fewer
#: than make this many optimizer steps: at 20 epochs a MNIST 10k search with
#: ``max_time`` of 65-93 s trained nothing but its start, and 8 epochs of
#: digits (56 steps) left the start at 0.34 validation accuracy
#: (docs/algorithm.md, deviation 28).
AUTO_MIN_STEPS = 250
#: Share of the training images held out to choose the architecture
#: (docs/architecture.md §5.5).
VALIDATION_FRACTION = 0.1
#: A With Reg training of a network within the budget keeps alive channels
#: that cost at least this share of its FLOPs: MorphNet's pressure pauses
#: there instead of killing a whole stream (a collapse; docs/algorithm.md,
#: deviation 30). Over the budget the floor is the budget (deviation 23).
MORPH_FLOOR_SHARE = 0.25
#: A MorphNet step whose widest stream would be narrower than this drops the
#: weakest blocks until it is not (or none is left): a deep net of 4-5
#: channels refits worst (docs/algorithm.md, deviation 26); 1 turns it off.
MIN_MORPH_WIDTH = 8
#: ``start="auto"`` average-pools the input by 2 where even the pyramid
#: start's stem, scaled to the budget, would be narrower than
#: ``MIN_MORPH_WIDTH``, as long as the pooled image's shorter side stays at
#: least this long (28 px halves once, to the case measured): at MNIST 10k
#: and 1e5 FLOPs the pyramid on 14x14 inputs (`12[-] > 24[-] > 48[-]`) beat
#: it on 28x28 (`4[-] > 8[-] > 17[-]`) by 0.0107 (docs/algorithm.md,
#: deviation 33).
AUTO_MIN_SIDE = 14
#: The MorphNet step rounds widths of at least 4 x this to its multiples: odd
#: widths ran up to 40 % slower per FLOP (docs/algorithm.md, deviations 18-19).
WIDTH_MULTIPLE = 8

# ----------------------------------------------------------------- the refit
#: Share of ``max_time`` kept for the refit; the search gets the rest. 0.5,
#: not 0.2: MNIST 10k at T = 300 s gained 0.13-0.23 points; 0.6, not 0.5:
#: MNIST 10k at 1e5-1e6 FLOPs, 7 of 9 fits better, medians +0.0004 to
#: +0.0015 (docs/algorithm.md, deviations 13 and 32).
REFIT_TIME_SHARE = 0.6
#: With ``max_time``, the refit may stretch to this many times its planned
#: epochs when the search left the time. 8, not 4, since the search stops
#: early rather than start what cannot finish: at 4x a MNIST fit (T = 300 s)
#: ended at 255 s with the refit at its 32-epoch cap (docs/algorithm.md,
#: deviation 17).
REFIT_MAX_STRETCH = 8
#: A refit that the wall-clock safety net cut after at least this share of
#: its epochs is still used: its one-cycle learning rate had fallen below 3 %
#: of the peak. Before, the demo on a loaded machine threw away a refit cut
#: at 63 of 64 epochs (488 s) and returned the search's network, 0.9794 test
#: accuracy (docs/algorithm.md, deviation 31).
REFIT_USE_SHARE = 0.9
#: The refit's one-cycle peak, in units of ``lr`` (measured on 300-image digits
#: folds: peak 1x -> 0.958, 3x -> 0.978 cross-validated accuracy at 600 steps).
REFIT_PEAK_LR = 3.0
#: The refit's cross-entropy label smoothing (the search's trainings keep plain
#: CE: their validation loss drives early stopping and greedy out). One digits
#: net, 10 seeds: 0.9810 -> 0.9848 mean test accuracy, no seed worse.
REFIT_LABEL_SMOOTHING = 0.1
#: ... but not for a network with fewer parameters than this many per
#: training image, which underfits: without smoothing MNIST 10k at 1e5 FLOPs
#: (0.6-0.9 parameters per image) gained 0.0023-0.0038 and digits at 1e4
#: (0.47) 0.0033, while every network of 1.37 or more per image lost
#: 0.0002-0.0056 (docs/algorithm.md, deviation 16).
REFIT_SMOOTH_MIN_PARAMS_PER_IMAGE = 1.0
#: Floor on the refit's optimizer steps: small data gets more epochs (300
#: images at batch 128 are 3 steps an epoch; 20 epochs do not train a net).
REFIT_MIN_STEPS = 600

# ------------------------------------------------------- the search's trainings
#: Early stopping's patience in epochs (at most a third of ``max_epochs``, at
#: least 2, so that it acts in short trainings too).
PATIENCE = 5
#: The penalties move |gamma| as plain SGD would at this many times Adam's
#: current lr (0.1 vs 1e-3: the usual SGD and Adam learning rates of a
#: ResNet; docs/algorithm.md, "Penalties under Adam").
PROXIMAL_LR_RATIO = 100.0
#: Scale of the last BN's gamma in an inserted block: near identity, not
#: zero (docs/architecture.md §5.1).
INSERT_GAMMA = 1e-2
#: Random in draws a new place this many times when the drawn insertion
#: would recreate an architecture visited before.
MAX_REDRAWS = 50
#: ``Architecture.scaled(omega, multiple)`` rounds widths of at least this
#: many multiples (32 for 8): narrower nets are overhead-bound, and rounding
#: them gave up FLOPs that cost accuracy on digits (docs/algorithm.md,
#: deviation 19).
ROUND_FROM = 4
