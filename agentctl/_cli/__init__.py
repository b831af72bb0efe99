"""The command-line interface: a thin layer over the library. Nothing outside this package prints."""
