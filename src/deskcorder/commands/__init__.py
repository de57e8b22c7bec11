"""What the user-facing commands do: ``inspect``, ``review``, ``status``, ``consent``, ``doctor``.

``deskcorder.cli`` parses arguments and maps errors to exit codes; each module
here does one command's work and writes its output to the stream it is given.
They sit above the agent's parts (capture, storage, upload, control,
platform), which never import them.
"""
