"""Model images: OCI container images holding Ollama models (docs/images.md)."""
