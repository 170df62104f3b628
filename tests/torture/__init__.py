"""The torture suite: drills with real processes and real databases that try to break zonesync's guarantees.

`tests/torture/test_torture.py` runs a bounded, seeded selection with the test suite (marker `torture`);
`python -m tests.torture` runs the long version and prints a table drill by pairing.
"""
