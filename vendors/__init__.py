"""Billing-data vendors. Each one is a Typer sub-app plus a pipeline that talks only to the backend layer."""
