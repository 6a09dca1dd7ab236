"""Results kept and shared: the durable --out folder (store, files, fingerprint), tidy tables (results), who runs what (shares), several processes (distributed), Slurm (slurm)."""
