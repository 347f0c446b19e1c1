"""`seqattr methods` and `seqattr step-functions`: the catalogue, read from `schemas/` (no service needed),
shown like the reference library's `inseq.explain`: a table of every id, or one id with its parameters."""

from __future__ import annotations

import json
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas.methods import METHOD_SPECS, MethodSpec
from schemas.step_functions import STEP_FUNCTION_SPECS, StepFunctionSpec

_BOUNDS = (
    ("minimum", "≥"),
    ("exclusiveMinimum", ">"),
    ("maximum", "≤"),
    ("exclusiveMaximum", "<"),
    ("minItems", "items ≥"),
    ("maxItems", "items ≤"),
)
"""JSON-schema bounds and how they read in the parameter table."""


def _type(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A parameter's JSON schema as one short line: `integer ≥1 ≤1000`, `'a' | 'b'`, `list of integer`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        fields = ", ".join(defs.get(name, {}).get("properties", {}))
        return f"{{{fields}}}" if fields else name
    if "anyOf" in schema:
        return " | ".join(_type(option, defs) for option in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        kind = f"list of {_type(schema.get('items', {}), defs)}"
    bounds = [f"{sign}{schema[key]}" for key, sign in _BOUNDS if key in schema]
    return " ".join([kind, *bounds])


def parameters_table(schema: dict[str, Any]) -> Table | Text:
    """One row per parameter: name, type, default (or `required`) and description."""
    properties = schema.get("properties", {})
    if not properties:
        return Text("No parameters.", style="dim")
    defs, required = schema.get("$defs", {}), set(schema.get("required", ()))
    table = Table(box=box.SIMPLE_HEAD, title="Parameters", title_justify="left")
    for name in ("name", "type", "default", "description"):
        table.add_column(name, style="cyan" if name == "name" else "", overflow="fold")
    for name, prop in properties.items():
        default = "required" if name in required else json.dumps(prop.get("default"))
        table.add_row(name, _type(prop, defs), default, prop.get("description", ""))
    return table


def _facts(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _example(option: str, ident: str, schema: dict[str, Any], arg_option: str) -> Text:
    """A command line that uses the id, setting its first parameter to its default."""
    line = f"seqattr attribute {option} {ident}"
    for name, prop in schema.get("properties", {}).items():
        if "default" in prop and prop["default"] is not None:
            line += f" {arg_option} {name}={json.dumps(prop['default'])}"
            break
    return Text.assemble(("e.g. ", "dim"), (line + " -i 'Hello world'", "green"))


def method_detail(spec: MethodSpec) -> Panel:
    facts = _facts(
        [
            ("family", spec.family),
            ("reference", spec.reference),
            ("uses baselines", _yes(spec.uses_baselines)),
            ("target attribution", _yes(spec.supports_target_attribution)),
            ("randomised (seed)", _yes(spec.randomised)),
            ("uses attributed_fn", _yes(spec.uses_attributed_fn)),
            ("unit dimensions", ", ".join(spec.unit_dims) or "none (one score per token)"),
            ("default aggregators", ", ".join(a.value for a in spec.default_aggregators) or "none"),
        ]
    )
    body: list[RenderableType] = [
        Text(spec.description),
        facts,
        parameters_table(spec.parameters),
        _example("-a", spec.id, spec.parameters, "--method-arg"),
    ]
    return Panel(Group(*body), title=f"[bold]{spec.id}[/]", title_align="left", expand=False)


def step_function_detail(spec: StepFunctionSpec) -> Panel:
    facts = _facts(
        [
            ("attributable", _yes(spec.attributable) + ("" if spec.attributable else " (step_scores only)")),
            (
                "contrastive",
                _yes(spec.contrastive) + (" (needs contrast_targets)" if spec.contrastive else ""),
            ),
            ("span aggregate", spec.span_aggregate.value),
        ]
    )
    line = f"seqattr attribute {'--attributed-fn' if spec.attributable else '--step-scores'} {spec.id}"
    for name in spec.parameters.get("required", ()):
        line += f" --{'attributed-fn' if spec.attributable else 'step-score'}-arg "
        line += f"{name}=VALUE" if spec.attributable else f"{spec.id}.{name}=VALUE"
    if spec.contrastive:
        line += " --contrast-target 'Hello there'"
    example = Text.assemble(("e.g. ", "dim"), (line + " -i 'Hello world'", "green"))
    body: list[RenderableType] = [Text(spec.description), facts, parameters_table(spec.parameters), example]
    return Panel(Group(*body), title=f"[bold]{spec.id}[/]", title_align="left", expand=False)


def _parameter_names(schema: dict[str, Any]) -> str:
    return ", ".join(schema.get("properties", {})) or "—"


def methods_table() -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Attribution methods (seqattr methods ID for details)")
    for name in ("id", "family", "description", "parameters"):
        table.add_column(name, style="cyan" if name == "id" else "", no_wrap=name == "id")
    for spec in METHOD_SPECS.values():
        table.add_row(spec.id, spec.family, spec.description, _parameter_names(spec.parameters))
    return table


def step_functions_table() -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Step functions (seqattr step-functions ID for details)")
    for name in ("id", "description", "attributable", "contrastive", "parameters"):
        table.add_column(name, style="cyan" if name == "id" else "", no_wrap=name == "id")
    for spec in STEP_FUNCTION_SPECS.values():
        table.add_row(
            spec.id,
            spec.description,
            _yes(spec.attributable),
            _yes(spec.contrastive),
            _parameter_names(spec.parameters),
        )
    return table
