"""Database backends: one small module per engine, resolved lazily by :mod:`core.backends.factory`."""
