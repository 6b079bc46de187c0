"""Offline training and evaluation: fitting the models the processor serves from.

Uses pandas, SciPy, scikit-learn and implicit; the domain never imports this package."""
