"""The local runtime: installs the JVM jars and Redis, and runs Kafka and Redis on loopback."""

from streaming.runtime.install import install_runtime
from streaming.runtime.services import LocalStack, ServiceStatus

__all__ = ["LocalStack", "ServiceStatus", "install_runtime"]
