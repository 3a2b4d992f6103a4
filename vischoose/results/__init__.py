"""Results: the records measured, the SQLite store with its migrations, export and import."""
