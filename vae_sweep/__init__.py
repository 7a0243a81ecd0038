"""The `vae-sweep` command line: one module per command (train, run, spaces, analyze).

It parses arguments and calls vae_core, sweeps and analysis; the libraries hold no CLI text.
"""
