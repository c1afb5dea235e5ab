"""Views (mounted at ``/threads``): a thread's timeline and what the model saw at a step (Factor 3).

The pages and the model's view are built by :mod:`functions.timeline`; these routes load the thread, pick the
agent and shape the answer: JSON for ``context``, HTML for ``view`` and ``context.html``.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Response, Router

from core.kernel.agent import UnknownAgentError
from functions._html import page
from functions._wiring import runtime
from functions.routes.models import HTML_OK, ContextView, SeqQuery, ThreadId, documented
from functions.timeline import ModelView, model_view, render_context, render_timeline

router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves Router.__init__ unannotated


@router.get(
    "/<thread_id>/view",
    tags=["views"],
    summary="A thread's timeline, as an HTML page",
    responses={**documented(404, 422), **HTML_OK},
)
def thread_page(thread_id: ThreadId) -> Response[str]:
    return page(200, render_timeline(runtime().threads.load(thread_id)))


@router.get(
    "/<thread_id>/context",
    tags=["views"],
    summary="What the model saw at a model call: system prompt and rendered context",
    responses=documented(400, 404, 422),
)
def thread_context(thread_id: ThreadId, seq: SeqQuery = None) -> ContextView:
    return ContextView.of(_model_view(thread_id, seq))


@router.get(
    "/<thread_id>/context.html",
    tags=["views"],
    summary="What the model saw at a model call, as an HTML page",
    responses={**documented(400, 404, 422), **HTML_OK},
)
def thread_context_page(thread_id: ThreadId, seq: SeqQuery = None) -> Response[str]:
    return page(200, render_context(_model_view(thread_id, seq)))


def _model_view(thread_id: str, seq: int | None) -> ModelView:
    rt = runtime()
    thread = rt.threads.load(thread_id)
    agent = rt.agents.get(thread.agent)
    if agent is None:
        raise UnknownAgentError(thread.agent, sorted(rt.agents))
    return model_view(thread, agent, rt.prompts, seq)
