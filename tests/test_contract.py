"""The contract's documents: valid OpenAPI 3.1 and AsyncAPI 3, covering every route, frame and error code, and
generated from the same models that validate input (so a rule in a message is the rule in the document)."""
import ast
import importlib.util
import json

import jsonschema
import pytest
import yaml
from openapi_spec_validator import validate as validate_openapi

import config
from emotion_app import create_app
from emotion_app.contract.asyncapi import asyncapi_document
from emotion_app.contract.bodies import EmotionChange, Registration
from emotion_app.contract.codes import ERROR_CODES
from emotion_app.contract.frames import CLIENT_FRAMES, SERVER_FRAMES
from emotion_app.contract.validation import FrameError, check
from tests.conftest import ROOT, TEST_SECRETS

_spec = importlib.util.spec_from_file_location("make_asyncapi", ROOT / "scripts" / "make_asyncapi.py")
make_asyncapi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_asyncapi)

ASYNCAPI_SCHEMA = json.loads((ROOT / "tests" / "asyncapi" / "asyncapi-3.0.0.schema.json").read_text())


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "EMOTIONS": ("calm", "happy"), **TEST_SECRETS})


@pytest.fixture(scope="module")
def openapi(app):
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


@pytest.fixture(scope="module")
def asyncapi(app):
    response = app.test_client().get("/api/asyncapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def asyncapi_errors(document):
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(document)]


def test_the_openapi_document_is_valid_openapi_3_1(openapi):
    assert openapi["openapi"] == "3.1.0"
    validate_openapi(openapi)  # raises on any violation


def test_the_openapi_document_is_checked_for_real():
    # The validator refuses a broken document (a response without its required description).
    broken = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}
    with pytest.raises(Exception, match="description"):
        validate_openapi(broken)


def test_the_asyncapi_documents_are_valid_asyncapi_3(asyncapi):
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi_errors(asyncapi) == []
    committed = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert asyncapi_errors(committed) == []
    broken = {**asyncapi, "operations": {"x": {"action": "publish", "channel": {"$ref": "#/channels/socket"}}}}
    assert asyncapi_errors(broken)  # AsyncAPI 2's verb is not AsyncAPI 3's


def test_docs_asyncapi_yaml_is_generated_from_the_models():
    assert (ROOT / "docs" / "asyncapi.yaml").read_text() == make_asyncapi.render(), (
        "docs/asyncapi.yaml is out of date: run .venv/bin/python scripts/make_asyncapi.py"
    )


def test_every_route_is_in_a_document(app, openapi):
    documented = {(path, method.upper()) for path, item in openapi["paths"].items() for method in item}
    routes = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
        if rule.endpoint != "static"
    }
    # The pages are HTML for people; the socket has the AsyncAPI document.
    assert routes - documented == {("/", "GET"), ("/api/docs", "GET"), ("/api/ws", "GET")}
    assert documented <= routes


def test_every_frame_is_in_the_asyncapi_document(asyncapi):
    messages = asyncapi["components"]["messages"]
    assert {m["name"] for k, m in messages.items() if k.startswith("client_")} == set(CLIENT_FRAMES)
    assert {m["name"] for k, m in messages.items() if k.startswith("server_")} == set(SERVER_FRAMES)
    for operation in asyncapi["operations"].values():
        for ref in operation["messages"]:
            assert ref["$ref"].rsplit("/", 1)[1] in messages
    assert set(asyncapi["x-close-codes"]) == {"1008", "1009", "1011", "1012", "4401", "4403"}


def test_the_documents_carry_the_servers_settings(openapi, asyncapi):
    # This app's vocabulary is calm and happy, not the default one.
    assert openapi["components"]["schemas"]["EmotionChange"]["properties"]["emotion"]["enum"] == ["calm", "happy"]
    update = asyncapi["components"]["schemas"]["EmotionUpdate"]["properties"]["emotion"]
    assert update["enum"] == ["calm", "happy"] and "x-setting" not in json.dumps(asyncapi)


def test_both_documents_enumerate_the_same_error_codes(openapi, asyncapi):
    http = openapi["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    frames = asyncapi["components"]["schemas"]["ErrorFrame"]["properties"]["code"]["enum"]
    assert http == frames == list(ERROR_CODES)


def _codes_in_source():
    """Every error code written in emotion_app: ApiError/error_response/ImageError's second argument,
    FrameError's and refuse's first, `code=` keywords, Must's `code`, and HTTP_CODES' values."""
    found = {}
    for path in (ROOT / "emotion_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            position = {"ApiError": 1, "error_response": 1, "ImageError": 1, "FrameError": 0, "refuse": 0}.get(name)
            arguments = [node.args[position]] if position is not None and len(node.args) > position else []
            arguments += [k.value for k in node.keywords if k.arg == "code"]
            for argument in arguments:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    found.setdefault(argument.value, f"{path.relative_to(ROOT)}:{node.lineno}")
    from emotion_app.errors import HTTP_CODES

    for code in [*HTTP_CODES.values(), "http_error"]:
        found.setdefault(code, "emotion_app/errors.py")
    return found


def test_every_error_code_in_the_code_is_enumerated():
    found = _codes_in_source()
    assert len(found) > 50  # the scan sees the codes at all
    assert {code: where for code, where in found.items() if code not in ERROR_CODES} == {}


def test_a_fields_rule_is_the_same_in_the_document_and_in_the_error(openapi):
    with pytest.raises(FrameError) as info:
        check(EmotionChange, {"emotion": "happy", "client_msg_id": ""}, {"EMOTIONS": ("happy",)})
    assert (info.value.code, info.value.field) == ("invalid_field", "client_msg_id")
    assert info.value.message == "Field 'client_msg_id' must be a string of 1-64 characters"
    with pytest.raises(FrameError) as info:
        check(Registration, {"username": "a b", "password": "long enough"})
    rule = "3-32 characters: letters, digits, '_', '.' or '-'"
    assert info.value.message == f"Field 'username' must be {rule}"
    username = openapi["components"]["schemas"]["Registration"]["properties"]["username"]
    assert rule in username["description"] and username["pattern"] == "^[A-Za-z0-9_.-]{3,32}$"


def test_the_readme_links_both_documents():
    readme = (ROOT / "README.md").read_text()
    assert "/api/openapi.json" in readme and "docs/asyncapi.yaml" in readme and "/api/asyncapi.json" in readme


def test_default_settings_make_a_valid_document():
    assert asyncapi_errors(asyncapi_document(config.settings({}))) == []
