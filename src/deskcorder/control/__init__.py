"""Local control plane: the CLI talks to the running agent (status, pause, resume, flush)."""

from deskcorder.control.channel import ControlServer, request, runtime_dir

__all__ = ["ControlServer", "request", "runtime_dir"]
