"""The HTTP layer: parse, call a flow or a store query, serialise. Nothing else."""
