"""mes-gateway: MES data collection from PLCs to MQTT and PostgreSQL/TimescaleDB."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mes-gateway")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+src"
