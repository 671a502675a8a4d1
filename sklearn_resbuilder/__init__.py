"""sklearn_resbuilder: ResBuilder neural architecture search as a scikit-learn estimator."""

from .architecture import Architecture, Stage, Stem
from .checkpoint import CheckpointError
from .estimator import ResBuilderClassifier

__version__ = "0.4.0"

__all__ = ["Architecture", "CheckpointError", "ResBuilderClassifier", "Stage", "Stem",
           "__version__"]
