"""Results kept and shared: the durable --out folder (store), tidy tables (results), who runs what (shares), several processes (distributed), Slurm (slurm), the compile cache."""
