"""The compute plane: everything that imports torch and friends.

Workers start through ``python -m backends.worker STAGE_JSON``; the control plane
(``xstilts_tui``) never imports this package.
"""
