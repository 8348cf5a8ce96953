"""Where data comes from: hub sources through ``datasets``, local files, the benchmark
authors' checksummed downloads, and the offline demo's generated tasks."""
