"""The ``finops`` command line: thin Typer commands over the library, one console, one error handler."""
