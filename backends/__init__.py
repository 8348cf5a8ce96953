"""The compute plane, installed as ``xstilts_tui.compute`` (from the folder ``backends/``):
everything that imports torch and friends. ``engines/`` trains, ``kinds/`` knows each task
kind, ``inputs/`` loads rows, features and models; ``worker`` is the entry point.

Workers start through ``python -m xstilts_tui.compute.worker STAGE_JSON``; the rest of
``xstilts_tui`` (the control plane) never imports this package.
"""
