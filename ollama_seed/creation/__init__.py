"""``create``: models from a Modelfile and local GGUF files, written into the store with no Ollama server.

The core (``modelfile``, ``params``, ``gguf``, ``sniff``, ``gojson``, ``gofloat``, ``config``, ``layers``) is bytes
in, bytes out; ``sources`` and ``run`` copy files into the store and write the manifest.
May import ``core``, ``store``, ``wire`` and ``pulling``.
"""
