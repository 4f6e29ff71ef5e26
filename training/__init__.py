"""Training side: PyTorch only; writes artifacts through model_store; never imports service."""
