"""Language evaluation: official LongBench / InfiniteBench / ChouBun metrics, loaders, and a built-in suite."""
