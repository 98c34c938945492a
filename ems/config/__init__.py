"""Configuration: the typed schema, its validation, and the store that applies changes at runtime."""
from .schema import EmsConfig, SECTIONS
from .store import ConfigStore, load_config, parse_yaml_config

__all__ = ["EmsConfig", "SECTIONS", "ConfigStore", "load_config", "parse_yaml_config"]
