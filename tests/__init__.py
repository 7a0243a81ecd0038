"""vae-sweep tests (a package, so tests/conftest.py does not put tests/ on sys.path)."""
