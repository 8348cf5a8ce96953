"""The tasks table (every task's kind, languages, hub sources, metric) and the readers of
the benchmark authors' own file formats: what every layer above, and the workers, share."""
