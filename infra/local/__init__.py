"""The local stack (moto + the real ASL + the real handlers) and the demo."""
