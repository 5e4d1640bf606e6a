"""Storage adapters: the per-labour SQLite databases and the shared database.

Driver errors are translated into StorageError here, so callers never catch
apsw errors.
"""
