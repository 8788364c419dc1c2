"""DataHub Connections for Python: find, test and use your team's database connections."""
