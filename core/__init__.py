"""Open FinOps Stack core: configuration, errors, load state and database backends."""
