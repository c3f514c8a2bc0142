"""Data: dataset layouts, audio reading, synthetic data, log-Mel features, TFDS shards, pipelines."""
