"""The shared audio layer: the one sample rate, decoding, read-ahead, the log-mel front end."""
