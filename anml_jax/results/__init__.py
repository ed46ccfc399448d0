"""The results: evaluation records, their store, and the tables drawn from them.

:mod:`record` defines what a record is (its schema version, its identity);
:mod:`store` indexes the records below a folder and picks the measurement of
each table cell. Neither imports JAX: reading results needs no accelerator
stack.
"""
