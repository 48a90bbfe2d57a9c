"""The experiments behind the lessons, one module (or, for Omniglot, one package) each: lesson 01's
preconditioning problems, Appendix D's mountains, the Omniglot protocol, maze training with actor-critic, and
continual sine learning. Each is built from :mod:`warpkit.engine` and the data, environments and models."""
