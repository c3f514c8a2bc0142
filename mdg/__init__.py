"""mdg: anomalous sound detection under domain shift in JAX/Flax."""
