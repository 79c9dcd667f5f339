"""``ensure``/``aensure``: the cheap on-disk check, pulls of what is missing, the Ollama server client, the config file.

May import ``core``, ``store``, ``wire``, ``pulling`` and ``creation`` (Modelfiles).
"""
