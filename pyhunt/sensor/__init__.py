"""The sensor (``python -m pyhunt sensor``): configuration, the run loop, health and metrics."""
from pyhunt.sensor.config import SETTINGS, ConfigError, SensorConfig, load_config

__all__ = ["SETTINGS", "ConfigError", "SensorConfig", "load_config"]
