"""xstilts-tui: intermediate-task training and zero-shot cross-lingual evaluation.

The control plane, as packages from the bottom up: ``tasks``, ``data``, ``scoring``,
``protocol`` (what workers share), ``recipe``, ``plan``, ``results``, ``run``,
``dashboard``, ``cli``; a package imports only from those below it. It never imports the
compute stack: that is ``xstilts_tui.compute`` (the folder ``backends/``), run in worker
processes.
"""

__version__ = "0.1.0"
