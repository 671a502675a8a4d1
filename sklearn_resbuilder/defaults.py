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
#: Share of the training images held out to choose the architecture
#: (docs/architecture.md §5.5).
VALIDATION_FRACTION = 0.1
#: A MorphNet step whose widest stream would be narrower than this drops the
#: weakest blocks until it is not (or none is left): a deep net of 4-5
#: channels refits worst (docs/algorithm.md, deviation 26); 1 turns it off.
MIN_MORPH_WIDTH = 8
#: The MorphNet step rounds widths of at least 4 x this to its multiples: odd
#: widths ran up to 40 % slower per FLOP (docs/algorithm.md, deviations 18-19).
WIDTH_MULTIPLE = 8
