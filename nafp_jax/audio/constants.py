"""Facts about audio that several layers rely on, each defined once here."""

# The sample rate every part of the system works at: decoding resamples to it, the front
# end, the training pairs, the distortions and the catalogue's timestamps assume it.
SAMPLE_RATE = 16000

# Peak |sample| below which audio counts as silent: peak normalisation divides by at least
# this (silence stays silence), and the front end's level normalisation floors a window's
# peak level at it.
PEAK_FLOOR = 1e-12
