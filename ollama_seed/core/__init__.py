"""The pure core: names, digests, manifests, the store layout, part plans, ranges, auth challenges, progress, errors.

No I/O, no httpx or anyio; imports nothing else of ollama_seed.
"""
