"""What the control plane and the workers share: events, the stage cache and its markers,
process liveness, slots, provenance, typed hyper-parameters, backend options and the
DeepSpeed configuration's ``auto`` values. Nothing here imports torch."""
