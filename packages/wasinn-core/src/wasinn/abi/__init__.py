"""The guest ABI: numbering profiles, bounds-checked guest memory, and the import functions."""
