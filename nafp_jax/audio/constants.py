"""The sample rate every part of the system works at: decoding resamples to it, the front end,
the training pairs, the distortions and the catalogue's timestamps assume it."""

SAMPLE_RATE = 16000
