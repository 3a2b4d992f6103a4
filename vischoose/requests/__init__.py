"""One request type per capability, each option's default, range and message in one place, checked when built:
ProfileRequest, EvaluateRequest, ExportRequest, RecommendRequest. The CLI builds them from flags; the public API
and other machines (the fleet) take them as they are."""
