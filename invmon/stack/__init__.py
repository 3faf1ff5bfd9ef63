"""The local development stack (Kafka, PostgreSQL, Redis) behind `invmon stack`.

Everything lives under ``settings.stack_dir`` and listens on 127.0.0.1 at the configured ports, so two
stacks (say, a dev stack and a test stack) can run side by side without meeting.
"""

from invmon.stack.manager import ServiceStatus, StackError, down, status, up

__all__ = ["ServiceStatus", "StackError", "down", "status", "up"]
