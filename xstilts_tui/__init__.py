"""xstilts-tui: intermediate-task training and zero-shot cross-lingual evaluation.

This package is the control plane (recipes, planning, dispatch, results, the command
line). It never imports the compute stack; that lives in the ``backends`` package and
runs in worker processes.
"""

__version__ = "0.1.0"
