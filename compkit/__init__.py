"""compkit's foundation: what every layer (compressors, quant, export, runtime_py, runtime_cpp, bench_device)
may import, and which imports none of them: the error base, atomic files and hashing, statistics."""
