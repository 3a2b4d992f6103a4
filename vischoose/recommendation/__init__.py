"""Recommendation: presets (data), ranking (pure: figures + preset -> Recommendation), the pipeline gathering figures."""
