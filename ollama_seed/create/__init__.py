"""``create``'s pure core: the Modelfile parser, a GGUF header reader, Go-exact JSON, and the layer builder.

Bytes in, bytes out: nothing here touches the network or writes a file; the caller copies and installs.
"""
