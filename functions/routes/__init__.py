"""The HTTP API's routes, one module per resource, each a Powertools ``Router``.

``functions/api.py`` includes every router in its one resolver, with the prefix it is mounted at, so there is one
validation setup, one set of error handlers (:mod:`functions.routes.errors`) and one OpenAPI document. A route
parses its request (the pydantic models of :mod:`functions.routes.models`), calls one core operation and shapes the
answer; who may call it is decided before it runs (:mod:`functions.routes.access`).

| module | mounted at | routes |
|---|---|---|
| ``threads`` | ``/threads`` | launch, list, a thread's state, its events |
| ``views`` | ``/threads`` | the timeline page, what the model saw (JSON and HTML) |
| ``control`` | ``/threads`` | pause, resume, retry, cancel, messages, fork |
| ``responses`` | ``/threads`` | answer what a thread waits for |
| ``agents`` | ``/agents`` | the agents this stack runs |
| ``compat`` | ``/thread`` | the 12-factor-agents reference server's API |
"""
