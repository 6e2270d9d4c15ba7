"""AS-LoRA: differentially private federated LoRA with adaptive per-layer factor selection."""
