"""LightningModules: they receive modules by injection, own optimisers, EMA and logging."""
