"""Thin Lambda handlers: parse the event, call core, return. Wiring lives in ``functions._wiring``.

The public surface is the handler modules, one per function of ``template.yaml`` (each exposes ``handler``), and
:mod:`functions.timeline`, the thread page. Nothing is imported here: a Lambda loads only its own handler's
modules. The ``_`` modules (``_wiring``, ``_boundary``, ``_html``, ``_observe``) and :mod:`functions.routes` are
this layer's internals; only ``infra/local``, which stands in for the Lambda runtime, reaches into ``_wiring``.
"""

__all__ = ["api", "approvals", "authorizer", "record_end", "request_human", "step", "timeline", "triggers"]
