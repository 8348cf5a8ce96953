"""What a stage reads: rows from the data sources, features kept in the stage cache, and
models and tokenizers (loaded strictly, as safetensors)."""
