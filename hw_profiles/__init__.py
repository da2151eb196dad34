"""Hardware profiles (``*.toml``) and the energy estimator."""
