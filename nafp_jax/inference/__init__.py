"""Inference: loading an exported model and fingerprinting audio with it."""
