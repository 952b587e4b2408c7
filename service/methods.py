"""The forensic methods this deployment runs: every registered one, or those ``FORENSICS_METHODS`` names."""

from forensics.methods import REGISTRY
from forensics.methods.base import Method
from service.settings import Settings, get_settings


def selected_methods(settings: Settings | None = None) -> list[Method]:
    """The methods to run, in registry order; an unknown name is a configuration error."""
    names = (settings or get_settings()).methods
    if not names:
        return list(REGISTRY.values())
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        raise ValueError(f"FORENSICS_METHODS names unknown methods {unknown}; known: {', '.join(REGISTRY)}")
    return [m for m in REGISTRY.values() if m.name in names]
