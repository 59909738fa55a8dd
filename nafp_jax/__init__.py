"""nafp-jax: neural audio fingerprinting in JAX/Flax.

Query-by-example audio identification with attention-based audio embeddings:
a log-mel front end, a ResNet-like CNN with spectral-temporal attention trained
with a contrastive NT-Xent loss, fingerprints every 100 ms, and a sequential
subsequence search that recovers the time offset of a query.
"""

__version__ = "0.1.0"
