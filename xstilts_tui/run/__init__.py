"""Dispatch: the runner (stages on slots, in dependency order), workers started and followed,
executors (child processes, SLURM through submitit), progress on a terminal, trackers."""
