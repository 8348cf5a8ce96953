"""The compute plane: everything that imports torch and friends.

Workers start through ``python -m xstilts_tui.compute.worker STAGE_JSON``; the control plane
(``xstilts_tui``) never imports this package.
"""
