"""AWS Cost and Usage Reports (CUR v1 and CUR 2.0 / Data Exports)."""
