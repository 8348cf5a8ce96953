"""A recipe as a plan of stages with content-hash keys (``stages``), what each key covers
(``identity``), why a stage runs or is reused (``index``), what it costs (``cost``), and
the plan shown to people and tools (``show``)."""
