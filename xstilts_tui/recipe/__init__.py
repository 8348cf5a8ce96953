"""Recipes: the typed objects (``schema``), TOML read and checked field by field into them
(``table``, ``sections``, ``task_settings``, ``parse``), the comment-keeping editor the
dashboard writes with (``doc``), and what a recipe reads from the hub (``inputs``)."""
