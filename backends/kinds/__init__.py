"""Task kinds: one module per kind (features, batches, heads, evaluation), the registry of
kinds, the multi-task model and its batch plan, and retrieval."""
