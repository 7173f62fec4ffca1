"""Command-line commands; one module per command, discovered by ``ssn3d.__main__``."""
