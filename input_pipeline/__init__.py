"""Input pipeline: audio decoding, TFDS builders, distortions and tf.data pipelines."""
