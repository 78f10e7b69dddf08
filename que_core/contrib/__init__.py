"""Optional plugins shipped with que-core (each needs its own extra)."""
