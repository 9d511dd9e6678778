"""Built-in algorithms, one folder each: the algorithm module, its tasks.yaml and a README."""
