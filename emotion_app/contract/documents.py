"""What the OpenAPI and AsyncAPI documents share: JSON Schemas of the models, with the server's settings
filled in."""
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

REF = "#/components/schemas/{model}"


class Generator(GenerateJsonSchema):
    """pydantic's JSON Schema, without a title on every field (the name says it)."""

    def field_title_should_be_set(self, schema):
        return False


def schemas(models, config, mode="validation"):
    """{model: its $ref} and the component schemas of `models` (and everything they use), as of `config`.

    `models` is a list of (model, mode) pairs, or of models taken in `mode`.
    """
    pairs = [item if isinstance(item, tuple) else (item, mode) for item in models]
    refs, defs = models_json_schema(pairs, ref_template=REF, schema_generator=Generator)
    components = with_settings(defs.get("$defs", {}), config)
    return {model: refs[(model, kind)] for model, kind in pairs}, components


def with_settings(schema, config):
    """`schema` with each `x-setting` bound (see validation.Setting) replaced by the setting's value."""
    if isinstance(schema, list):
        return [with_settings(item, config) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: with_settings(value, config) for key, value in schema.items() if key != "x-setting"}
    for keyword, name in schema.get("x-setting", {}).items():
        value = config[name]
        out[keyword] = list(value) if isinstance(value, (list, tuple)) else value
        out["description"] = f"{out.get('description', '')} `{keyword}` is the server's {name} setting.".lstrip()
    return out


def parameters(model, config, where="query"):
    """The OpenAPI parameters of a query model: one per field, with its schema and description."""
    schema = with_settings(model.model_json_schema(ref_template=REF, schema_generator=Generator), config)
    required = set(schema.get("required", ()))
    found = []
    for name, prop in schema["properties"].items():
        prop = _not_null(prop)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": where, "required": name in required, "schema": prop}
        if description:
            parameter["description"] = description
        found.append(parameter)
    return found


def _not_null(schema):
    """A parameter's schema without the null that an optional field's allows (a query string has no null)."""
    schema = dict(schema)
    if schema.get("default", "") is None:
        del schema["default"]
    branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        del schema["anyOf"]
        schema = {**branches[0], **schema}
    elif "anyOf" in schema:
        schema["anyOf"] = branches
    return schema
