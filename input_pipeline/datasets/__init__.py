"""TFDS builders: a folder of audio, FMA from a manual copy, noise recordings, RIRs."""
