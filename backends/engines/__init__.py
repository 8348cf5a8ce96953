"""Training engines: the interface (``base``), the registry a recipe's ``backend`` names, the
one training loop (``loop``) and what each engine provides to it (torch, DeepSpeed, PEFT),
process groups, and the opt-in CPU dropout."""
