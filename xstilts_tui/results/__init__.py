"""What runs leave: the results store, a run's manifest, the intervals of every delta
(``significance``), the headless tables, and ``report``'s tables, plots and provenance."""
