"""The front: the Python API (api), the command line (cli), figures (plot) and the README's generated tables (docs)."""
