"""Metrics as XTREME's ``evaluate.py`` computes them (QA, seqeval, accuracy, retrieval), the
XTREME score, and the table of scorers the ``score`` command chooses from."""
