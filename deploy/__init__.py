"""Deployment: Lava (through :mod:`mksgn.deploy.lava_compat`), the emulator and parity."""
