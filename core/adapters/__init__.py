"""The edge: model providers, stores, and the transports of notifications and replies (ARCHITECTURE.md, "The map").

Adapters implement the kernel's and the services' Protocols with an injected client (httpx, boto3). Each is
imported only by the code that builds it, so a Lambda that never sends email never loads the SES transport.
"""

__all__ = ["llm", "notify", "replies", "store"]
