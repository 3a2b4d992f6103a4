"""Models: the catalog (data/catalog.toml), the hub (the only importer of huggingface_hub), loading, published figures."""
