"""Phoenyra EMS: energy management for battery storage, as an appliance."""
__version__ = "0.1.0"
