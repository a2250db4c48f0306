"""One vocabulary of query inputs: every surface (the CLI's options, ``Searcher.query``'s keywords,
the API's JSON and upload fields, the page's choices) is what ``terms.QUERY_INPUTS`` derives, and no
module of those surfaces names the inputs in a list of its own."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import fields
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ibsearch.cli import cli
from ibsearch.engine import Library
from ibsearch.modality import MODALITIES, TEXT
from ibsearch.options import SearchOptions
from ibsearch.search import Searcher
from ibsearch.server.app import openapi_document
from ibsearch.server.models import SearchForm, SearchRequest, SearchSettings, api_inputs
from ibsearch.terms import QUERY_INPUTS, Given, inputs_on, no_input_message, python_keywords

PACKAGE = Path(__file__).parent.parent / "ibsearch"
#: The modules of the surfaces: none may list the inputs itself.
SURFACES = [
    "cli/commands.py",
    "search.py",
    "query_vector.py",
    "retrieval.py",
    "server/models.py",
    "server/query.py",
    "server/routes.py",
    "server/client.py",
    "server/service.py",
    "server/decoding.py",
]
NAMES = {row.name for row in QUERY_INPUTS} | {alias for row in QUERY_INPUTS for alias in row.aliases}
OPTIONS = {f"--{name}" for name in NAMES}
SETTINGS = {f.name for f in fields(SearchOptions)}  # what a query asks besides its inputs


def input_names(strings: list[str]) -> set[str]:
    """The query inputs ``strings`` name (as ``image`` or ``--image``), unless they are all modality
    names: the modalities are a vocabulary of their own (``modality.MODALITIES``)."""
    named = {s.removeprefix("--") for s in strings} & NAMES
    return set() if named <= set(MODALITIES) else named


def listed_in_python(source: str) -> list[str]:
    """Literal lists, tuples, sets and dicts of ``source`` naming two query inputs or more, strings
    naming three options of them or more (a message listing them), and three options or more
    declared one by one (``"--image"``)."""
    found = []
    options = {
        n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and n.value in OPTIONS
    }
    if len(input_names(sorted(options))) >= 3:
        found.append(f"options declared one by one: {sorted(options)}")
    tree = ast.parse(source)
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}  # docstrings
    for node in ast.walk(tree):
        items: list[ast.expr | None] = []
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            items = list(node.elts)
        elif isinstance(node, ast.Dict):
            items = [*node.keys, *node.values]
        constants = [item.value for item in items if isinstance(item, ast.Constant)]
        strings = [value for value in constants if isinstance(value, str)]
        if len(input_names(strings)) >= 2:
            found.append(f"line {node.lineno}: {sorted(input_names(strings))}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            options = input_names(re.findall(r"--[a-z]+", node.value))
            if len(options) >= 3:
                found.append(f"line {node.lineno}: a message naming {sorted(options)}")
    return found


def listed_in_javascript(source: str) -> list[str]:
    """Array literals of ``source`` holding two quoted query input names or more."""
    found = []
    for array in re.findall(r"\[[^\[\]]*\]", source):
        named = input_names(re.findall(r"""["']([a-z-]+)["']""", array))
        if len(named) >= 2:
            found.append(f"{array[:60]}: {sorted(named)}")
    return found


def test_the_table_names_each_input_once_and_offers_every_modality():
    names = [row.name for row in QUERY_INPUTS]
    assert len(names) == len(set(names)) and not set(names) & {a for row in QUERY_INPUTS for a in row.aliases}
    offered = {row.kind for row in QUERY_INPUTS if row.given in (Given.TEXT, Given.FILE)}
    assert offered == set(MODALITIES)
    over_http = {row.kind for row in inputs_on("upload")} | {row.kind for row in inputs_on("api")}
    assert over_http >= set(MODALITIES)


def test_the_query_command_offers_the_table_s_cli_inputs_and_nothing_else():
    command = cli.commands["query"]
    shared = {"library", "model", "checkpoint", "device", "precision", "as_json"}
    options = [p for p in command.params if isinstance(p, click.Option) and p.name not in shared]
    inputs = [p for p in options if p.name not in SETTINGS]
    assert [p.name for p in inputs] == [row.name for row in inputs_on("cli")]
    assert [p.opts for p in inputs] == [[f"--{row.name}"] for row in inputs_on("cli")]
    assert all(p.multiple for p in inputs)
    help_text = CliRunner().invoke(cli, ["query", "--help"]).output
    for row in inputs_on("cli"):
        assert re.search(rf"--{row.name} \[W=\]\w+\s+{re.escape(row.help)}", help_text), row.name


def test_a_query_without_input_names_every_cli_input(tmp_path: Path, tiny_card: str):
    Library.open(tmp_path / "lib", model=tiny_card, device="cpu", create=True).close()
    result = CliRunner().invoke(cli, ["query", "--library", str(tmp_path / "lib"), "--model", tiny_card])
    assert result.exit_code == 1 and no_input_message() in result.output
    assert all(f"--{row.name}" in result.output for row in inputs_on("cli"))


def test_searcher_query_takes_the_table_s_python_inputs_as_keywords():
    parameters = list(inspect.signature(Searcher.query).parameters)[1:]
    inputs = [name for name in parameters if name != "target" and name not in SETTINGS]
    assert set(inputs) == set(python_keywords()) and len(inputs) == len(python_keywords())
    assert parameters[:3] == ["text", "image", "audio"]  # positional, as documented


def test_the_api_s_fields_are_the_table_s_api_and_upload_inputs():
    settings = set(SearchSettings.model_fields)
    assert set(SearchRequest.model_fields) - settings == {row.name for row in inputs_on("api")}
    uploads = {row.name for row in inputs_on("upload")}
    assert set(SearchForm.model_fields) - set(SearchRequest.model_fields) == uploads | {
        f"{name}_weight" for name in uploads
    }
    schemas = openapi_document()["components"]["schemas"]
    for name in uploads:
        items = schemas["SearchForm"]["properties"][name]["items"]
        assert items["contentMediaType"] == "application/octet-stream"
    assert [i.name for i in api_inputs()] == [
        row.name for row in QUERY_INPUTS if row.offered("api") or row.offered("upload")
    ]
    # Every modality can be asked for over HTTP: as text, or as an upload.
    assert {i.kind for i in api_inputs() if i.given in (Given.FILE, Given.TEXT)} == set(MODALITIES)
    assert next(i for i in api_inputs() if i.given is Given.TEXT).kind == TEXT


@pytest.mark.parametrize("module", SURFACES)
def test_no_surface_module_lists_the_query_inputs_itself(module: str):
    assert listed_in_python((PACKAGE / module).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("script", sorted(p.name for p in (PACKAGE / "server" / "static").glob("*.js")))
def test_no_script_of_the_page_lists_the_query_inputs_itself(script: str):
    assert listed_in_javascript((PACKAGE / "server" / "static" / script).read_text(encoding="utf-8")) == []


def test_the_finders_find_a_list_of_inputs():
    assert listed_in_python('FIELDS = ("image", "audio", "video")')
    assert listed_in_python('UPLOADS = {("vision", None): "image", ("vision", "video"): "video"}')
    assert listed_in_python('raise E("a query needs at least one input: --text, --image or --like")')
    assert listed_in_python('@option("--text")\n@option("--image")\n@option("--audio")\ndef query(): ...')
    assert not listed_in_python('ORDER = ("vision", "text", "audio")')  # modalities, not inputs
    assert listed_in_javascript('const FILE_KINDS = ["image", "audio", "video"];')
    assert not listed_in_javascript('const ORDER = ["vision", "text", "audio", "depth"];')
