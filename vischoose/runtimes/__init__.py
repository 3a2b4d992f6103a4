"""Deployment runtimes: one module per runtime behind one interface, the registry, precisions, the agreement verdict."""
