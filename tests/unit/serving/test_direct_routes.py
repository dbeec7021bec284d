"""The inference requests' short way (serving.gateway.direct_routes): the same answers as the
app's normal way, and it refuses routes it could not serve faithfully."""

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from serving.gateway.direct_routes import DirectRoutes
from serving.gateway.errors import BadRequest, answer_errors


def app_with(handler, *, dependencies=()) -> FastAPI:
    app = FastAPI()
    app.add_middleware(DirectRoutes, routes=app.router.routes, paths=["/v1/echo"],
                       exception_handlers=app.exception_handlers)
    app.post("/v1/echo", dependencies=list(dependencies))(handler)
    answer_errors(app)
    return app


async def echo(request: Request) -> JSONResponse:
    body = await request.json()
    if "bad" in body:
        raise BadRequest("bad field", code="invalid_parameter", param="bad")
    return JSONResponse({"route": request.scope["route"].path, "got": body})


def test_a_post_without_a_query_string_reaches_its_handler_with_the_route_set():
    client = TestClient(app_with(echo))
    answer = client.post("/v1/echo", json={"a": 1})
    assert answer.status_code == 200 and answer.json() == {"route": "/v1/echo", "got": {"a": 1}}


def test_an_error_the_handler_raises_is_answered_by_the_apps_own_handler():
    answer = TestClient(app_with(echo)).post("/v1/echo", json={"bad": 1})
    assert answer.status_code == 400
    assert answer.json()["error"] == {"message": "bad field", "type": "invalid_request_error",
                                      "code": "invalid_parameter", "param": "bad"}


def test_other_methods_and_query_strings_take_the_apps_normal_way():
    client = TestClient(app_with(echo))
    assert client.get("/v1/echo").status_code == 405  # the router's answer, not the handler's
    assert client.post("/v1/echo?x=1", json={"a": 1}).json()["got"] == {"a": 1}


def test_a_route_with_dependencies_is_refused_at_start_rather_than_served_without_them():
    def guard() -> None:
        raise AssertionError("the dependency must run")

    client = TestClient(app_with(echo, dependencies=[Depends(guard)]))
    with pytest.raises(ValueError, match="takes more than the request"):
        client.post("/v1/echo", json={"a": 1})


def test_a_path_without_a_post_route_is_refused():
    with pytest.raises(ValueError, match="no POST route for /v1/missing"):
        DirectRoutes(None, routes=[], paths=["/v1/missing"], exception_handlers={})
