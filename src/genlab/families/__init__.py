"""The model families, one folder each: its model and math, its datasets, its metrics, its figures and
sample writers, and its experiments. Each folder's ``__init__`` says what is where and lists, as plain
tables, the names it adds to ``genlab.catalog``. Families import the core and the shared layers
(``genlab.maths``, ``genlab.nn``, ``genlab.data``), never each other."""
