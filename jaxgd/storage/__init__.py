"""Results kept and shared: the durable --out folder (store, its parts, files, fingerprint), tidy tables (results), who runs what (shares), several processes (distributed), Slurm (slurm)."""
