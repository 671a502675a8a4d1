"""sklearn_resbuilder: ResBuilder neural architecture search as a scikit-learn estimator."""

from .architecture import Architecture, Stage, Stem

__version__ = "0.1.0"

__all__ = ["Architecture", "Stage", "Stem", "__version__"]
