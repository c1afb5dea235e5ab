"""The local stack (moto + the real ASL + the real handlers), its HTTP front door, and the demo.

``__all__`` names the modules (imported by name, none here: the stack imports moto, which only local runs need).
"""

__all__ = ["demo", "http", "stack", "template", "triggers"]
