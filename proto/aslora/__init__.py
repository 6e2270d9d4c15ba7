"""Generated code of the AS-LoRA wire protocol (see proto/generate.py); versioned sub-packages."""
