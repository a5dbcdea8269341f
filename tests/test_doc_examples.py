"""Every curl example in README.md and docs/*.md, run for real against a live function, answers in the shape shown.

The function runs under gunicorn with the shipped penguin and CO2 bundles copied into a scratch store (so they are
the stable versions: `fallback` false) and the model docs/new-model.md builds (`seattle-weather`, through `init`
and one job run, as that page does). Each example's curl runs as written (subprocess curl) with 127.0.0.1 and the
server's port in place of localhost:8080, in the order of its page; an example that asks for "an id from an
answer" gets the id of its page's previous answer.

The answer shown after an example (its `# ...` lines in a bash block, the lines after a `$ curl` in a console
block) is read by a tolerant parser: `...` elides keys of an object, items of a list, or the start or end of a
fragment (a fragment is looked for anywhere in the answer). What is compared is the SHAPE: every key shown is
present, in the order shown; an object shown without `...` has no other key; a list shown without `...` has that
many items; each value has the type shown; booleans, null, `shape` lists and a few literal strings (model and
output names, datatypes, labels, error statuses) are compared by value. Numbers, ids and versions are not.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

import pytest

from testbed.servers import REPO, FunctionServer

PAGES = ("README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")))
DOC_HOST = "localhost:8080"
CHAINED_ID = "<an id from an answer>"
# keys whose string values are compared, not only typed: names, datatypes, labels, statuses
LITERAL_KEYS = frozenset({"name", "datatype", "model_name", "model", "deployedModelId", "modelDisplayName",
                          "outputDisplayName", "outputName", "status", "species", "field", "@type"})
ELLIPSIS = "..."
DEFAULT_MODEL = "penguins"  # the server's DEFAULT_MODEL, as `make serve` has it


# -------------------------------------------------------------------------------------- examples in the pages

@dataclass(frozen=True)
class Example:
    page: str
    line: int  # 1-based line of the curl command
    command: str  # the command as written (continuation lines joined by newlines)
    shown: str | None  # the answer as shown, comment marks removed; None when the page shows none
    console: bool  # the answer is a console block's raw output (the whole answer), not a `#` comment


def _complete(command: str) -> bool:
    if command.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(command, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def examples(page: str) -> list[Example]:
    """The curl examples of a page's bash and console code blocks, each with the answer it shows."""
    lines = (REPO / page).read_text(encoding="utf-8").splitlines()
    found, fence, i = [], None, 0
    while i < len(lines):
        text = lines[i]
        if text.lstrip().startswith("```"):
            fence = None if fence is not None else text.strip().removeprefix("```").strip()
            i += 1
            continue
        console = fence == "console" and text.startswith("$ curl ")
        if fence not in ("bash", "sh", "console") or not (console or text.lstrip().startswith("curl ")):
            i += 1
            continue
        start, command = i, text.removeprefix("$ ") if console else text
        while not _complete(command) and i + 1 < len(lines):
            i += 1
            command += "\n" + lines[i]
        i += 1
        shown: list[str] = []
        if console:
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("$", "```")):
                shown.append(lines[i])
                i += 1
        elif i < len(lines) and re.match(r"#\s?(\{|\[|\"|\.\.\.)", lines[i]):
            shown.append(lines[i][1:])
            i += 1
            while i < len(lines) and re.match(r"#\s{2,}", lines[i]):  # indented: the same answer goes on
                shown.append(lines[i][1:])
                i += 1
        found.append(Example(page, start + 1, command, "\n".join(shown).strip() or None, console))
    return found


ALL = [e for page in PAGES for e in examples(page)]


# ------------------------------------------------------------------------------- the tolerant answer parser

GAP = object()  # where `...` elides keys of an object


class Shown(dict):
    """An object as shown, with its `layout`: its keys in order and GAP where `...` elides some (zero or more)."""

    def __init__(self) -> None:
        super().__init__()
        self.layout: list = []

    def gap(self) -> None:
        if not self.layout or self.layout[-1] is not GAP:
            self.layout.append(GAP)


class ShownList(list):
    """A list as shown; `gap` is where `...` elides items (None: every item is shown)."""

    gap: int | None = None


TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<ellipsis>\.\.\.)|(?P<number>-?\d+(?:\.\d+)?'
                   r'(?:[eE][+-]?\d+)?)|(?P<word>true|false|null)|(?P<punct>[{}\[\]:,]))')


def tokens(text: str) -> list[tuple[str, object]]:
    """The JSON tokens and `...` of the text, up to the first thing that is neither (prose after an answer)."""
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            break
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "string":
            value = json.loads(value)
        elif kind == "number":
            value = json.loads(value)
        elif kind == "word":
            value = {"true": True, "false": False, "null": None}[value]
        out.append((kind, value))
    return out


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokens(text)
        self.pos = 0

    def peek(self) -> tuple[str, object] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, object]:
        token = self.peek()
        if token is None:
            raise EOFError
        self.pos += 1
        return token

    def value(self) -> object:
        kind, value = self.take()
        if kind == "punct" and value == "{":
            return self.members(Shown())
        if kind == "punct" and value == "[":
            return self.items()
        if kind in ("string", "number", "word"):
            return value
        raise ValueError(f"unexpected {value!r}")

    def members(self, obj: Shown) -> Shown:
        """An object's members up to its `}`; the end of the text (or a stray closer) ends a fragment."""
        while (token := self.peek()) is not None:
            kind, value = token
            if kind == "punct" and value in "}]":
                if value == "}":
                    self.pos += 1
                return obj
            self.pos += 1
            if kind == "ellipsis":
                obj.gap()
            elif kind == "string":
                if self.take() != ("punct", ":"):
                    raise ValueError(f"no ':' after {value!r}")
                obj.layout.append(value)
                try:
                    obj[value] = self.value()
                except EOFError:
                    obj.gap()
                    return obj
            elif not (kind == "punct" and value == ","):
                raise ValueError(f"unexpected {value!r} in an object")
        obj.gap()  # the text ends inside it
        return obj

    def items(self) -> ShownList:
        out = ShownList()
        while (token := self.peek()) is not None:
            kind, value = token
            if kind == "punct" and value == "]":
                self.pos += 1
                return out
            if kind == "punct" and value == ",":
                self.pos += 1
            elif kind == "ellipsis":
                self.pos += 1
                out.gap = len(out)
            else:
                try:
                    out.append(self.value())
                except EOFError:
                    break
        if out.gap is None:
            out.gap = len(out)  # the text ends inside it
        return out


def parse_shown(text: str) -> tuple[object, bool]:
    """(the shown answer, whether it is a fragment to be looked for anywhere in the real answer)."""
    parser = Parser(text)
    first = parser.peek()
    if first is None:
        raise ValueError(f"no JSON in {text!r}")
    if first[0] == "punct" and first[1] in "{[":
        return parser.value(), False
    fragment = Shown()
    fragment.gap()  # a fragment starts inside an object: keys may come before it
    return parser.members(fragment), True


# ----------------------------------------------------------------------------------------- shape comparison

def _kind(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def fits(layout: list, keys: list[str]) -> bool:
    """Whether the keys, in order, are the layout's with each GAP standing for zero or more keys."""
    @cache
    def match(i: int, j: int) -> bool:
        if i == len(layout):
            return j == len(keys)
        if layout[i] is GAP:
            return match(i + 1, j) or (j < len(keys) and match(i, j + 1))
        return j < len(keys) and keys[j] == layout[i] and match(i + 1, j + 1)
    return match(0, 0)


def mismatches(shown: object, actual: object, path: str = "$", key: str | None = None) -> list[str]:
    """Where the actual answer is not of the shape shown (empty: it is)."""
    if isinstance(shown, dict):
        if not isinstance(actual, dict):
            return [f"{path}: an object is shown, the answer has {_kind(actual)}"]
        problems = [f"{path}: no key {k!r}" for k in shown if k not in actual]
        layout = getattr(shown, "layout", list(shown))
        if not problems and not fits(layout, list(actual)):
            if GAP not in layout:
                problems.append(f"{path}: the answer has keys not shown (and no ...): "
                                f"{sorted(set(actual) - set(shown))}")
            else:
                pattern = ["..." if k is GAP else k for k in layout]
                problems.append(f"{path}: keys shown as {pattern}, answered in the order {list(actual)}")
        for k, v in shown.items():
            if k in actual:
                problems += mismatches(v, actual[k], f"{path}.{k}", k)
        return problems
    if isinstance(shown, list):
        if not isinstance(actual, list):
            return [f"{path}: a list is shown, the answer has {_kind(actual)}"]
        if key == "shape":
            return [] if actual == list(shown) else [f"{path}: shape {list(shown)} shown, {actual} answered"]
        gap = getattr(shown, "gap", None)
        if gap is None and len(actual) != len(shown):
            return [f"{path}: {len(shown)} items shown, {len(actual)} answered"]
        if len(actual) < len(shown):
            return [f"{path}: at least {len(shown)} items shown, {len(actual)} answered"]
        head, tail = (shown, []) if gap is None else (shown[:gap], shown[gap:])
        problems = []
        for i, item in enumerate(head):
            problems += mismatches(item, actual[i], f"{path}[{i}]")
        for j, item in enumerate(tail, start=len(actual) - len(tail)):
            problems += mismatches(item, actual[j], f"{path}[{j}]")
        return problems
    if _kind(shown) != _kind(actual):
        return [f"{path}: {_kind(shown)} shown ({shown!r}), {_kind(actual)} answered ({actual!r})"]
    if isinstance(shown, bool | None) and shown != actual:
        return [f"{path}: {shown!r} shown, {actual!r} answered"]
    if isinstance(shown, str) and key in LITERAL_KEYS and ELLIPSIS not in shown and shown != actual:
        return [f"{path}: {shown!r} shown, {actual!r} answered"]
    return []


def fragment_mismatches(shown: dict, actual: object) -> list[str]:
    """Empty when some object inside the answer has the fragment's shape; else the nearest misses."""
    candidates = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if set(shown) <= set(node):
                candidates.append(mismatches(shown, node, path))
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(actual, "$")
    if not candidates:
        return [f"no object in the answer has the keys {sorted(shown)}"]
    return [] if any(not c for c in candidates) else min(candidates, key=len)


# ------------------------------------------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """penguins and co2 (the shipped bundles, stable in a scratch store) and seattle-weather, as the docs build it."""
    from bench.onboarding import DATASETS, onboard  # noqa: PLC0415 - pandas and XGBoost, only for this fixture

    scratch = tmp_path_factory.mktemp("doc-examples")
    specs, store = scratch / "specs", scratch / "store"
    shutil.copytree(REPO / "specs", specs, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "function" / "shipped_model", store)
    weather = next(d for d in DATASETS if d.name == "seattle-weather")
    run = onboard(weather, specs, store)
    assert run["exit"] == 0, run
    function = FunctionServer({"SPECS_DIR": str(specs), "MODEL_STORE": str(store), "POINTER_TTL_S": "60",
                               "DEFAULT_MODEL": DEFAULT_MODEL}).start()
    yield function
    function.stop()


@pytest.fixture(scope="module")
def answers() -> dict[str, object]:
    """Per page: its last answer (`last`, for an example that needs an id from it) and the model of each prediction
    id its examples were answered (`ids`, which its feedback examples must name)."""
    return {"last": {}, "ids": {}}


def curl_args(command: str) -> list[str]:
    unwrapped = command.replace("\\\n", "")  # a backslash-newline joins lines, as in the shell
    return shlex.split(unwrapped, comments=True)


def run_curl(command: str, port: int) -> tuple[int, object]:
    """The example's curl, run as written against the test server: (HTTP status, parsed body)."""
    args = [arg.replace(DOC_HOST, f"127.0.0.1:{port}") for arg in curl_args(command)]
    assert args[0] == "curl" and any(f"127.0.0.1:{port}" in a for a in args), args
    done = subprocess.run([*args, "--max-time", "60", "-w", "\n%{http_code}"], capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def feedback_items(command: str) -> tuple[str, list[dict]] | None:
    """A feedback example's model and items (None for any other example)."""
    args = curl_args(command)
    if not any(a.endswith("/feedback") for a in args):
        return None
    body = json.loads(args[args.index("-d") + 1])
    return body.get("model", DEFAULT_MODEL), body.get("instances", [body])


def _first_id(answer: object) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("predictions"), list):
        return answer["predictions"][0]["id"]
    raise AssertionError(f"no prediction id in the previous answer {answer!r}")


# ------------------------------------------------------------------------------------------------------ tests

@pytest.mark.parametrize("example", ALL, ids=[f"{e.page}:{e.line}" for e in ALL])
def test_every_curl_example_answers_in_the_shape_shown(server, answers, example):
    command = example.command
    if CHAINED_ID in command:
        command = command.replace(CHAINED_ID, _first_id(answers["last"][example.page]))
    ids = answers["ids"].setdefault(example.page, {})
    feedback = feedback_items(command)
    if feedback is not None:  # the truth of a prediction the page made, by the same model
        model, items = feedback
        for item in items:
            assert ids.get(item["id"]) == model, (
                f"{example.page}:{example.line}: feedback for {model} names id {item['id']!r}, which no earlier "
                f"example of the page was answered by {model} (ids answered: {ids})")
    status, answer = run_curl(command, server.port)
    answers["last"][example.page] = answer
    if isinstance(answer, dict) and "deployedModelId" in answer:
        ids.update({p["id"]: answer["deployedModelId"] for p in answer["predictions"]})
    assert status < 500, (status, answer)
    if example.shown is None:
        assert status < 300, (status, answer)
        return
    shown, fragment = parse_shown(example.shown)
    problems = fragment_mismatches(shown, answer) if fragment else mismatches(shown, answer)
    assert not problems, f"{example.page}:{example.line}: the answer is not as shown:\n" + "\n".join(problems) + \
        f"\nanswered: {json.dumps(answer)[:3000]}"


def test_the_pages_have_the_examples_they_should():
    pages = {e.page for e in ALL}
    assert {"README.md", "docs/protocols.md", "docs/new-model.md", "docs/reliability.md"} <= pages
    readme = [e for e in ALL if e.page == "README.md"]
    assert len(readme) >= 9 and sum(e.shown is not None for e in readme) >= 6
    assert all(DOC_HOST in e.command for e in ALL)


@pytest.mark.parametrize(("shown", "actual", "problem"), [
    # README's V2 answer before: `parameters` missing from an object shown whole
    ('{"model_name":"p","id":"...","outputs":[{"name":"predict","data":["Adelie"]}]}',
     {"model_name": "p", "id": "x", "parameters": {"fallback": False}, "outputs": [{"name": "predict",
                                                                                     "data": ["Gentoo"]}]},
     "keys not shown"),
    # protocols.md's CO2 explanation before: attributions in another order than answered
    ('"featureAttributions":{"fuel_consumption_comb_l_per_100km":61.367,"fuel_type":3.84423,...}',
     {"explanations": [{"featureAttributions": {"engine_size_l": 1.0, "fuel_consumption_comb_l_per_100km": 2.0,
                                                "fuel_type": 3.0}}]},
     "order"),
    ('{"live":true}', {"live": False}, "True shown"),
    ('{"data":[0.9,...],"shape":[1,3]}', {"data": [], "shape": [1, 3]}, "at least 1 items"),
    ('{"a":[1,2]}', {"a": [1, 2, 3]}, "2 items shown"),
    ('{"a":1,...}', {"a": "1", "b": 2}, "number shown"),
    ('{"datatype":"FP64"}', {"datatype": "BYTES"}, "'FP64' shown"),
])
def test_the_shape_check_finds_what_differs(shown, actual, problem):
    parsed, fragment = parse_shown(shown)
    found = fragment_mismatches(parsed, actual) if fragment else mismatches(parsed, actual)
    assert any(problem in p for p in found), found


@pytest.mark.parametrize(("shown", "actual"), [
    ('{"id":"5f1c...-0","p":{"A":0.99,...},"v":"...","f":false,"w":[]}   (202; prose after it)',
     {"id": "ab-0", "p": {"A": 0.5, "B": 0.5}, "v": "1", "f": False, "w": []}),
    ('..."attributions":[{"x":0.5,...,"i":[0]},...]}]}', {"e": [{"attributions": [{"x": 1, "y": 2, "i": [0]},
                                                                                  {"x": 1}]}]}),
    ('"explanations":[{"attributions":[{"b":0.5,"f":{"a":1,', {"explanations": [{"attributions": [
        {"b": 1.5, "f": {"a": 2, "c": 3}, "o": 1}]}], "predictions": []}),
])
def test_the_shape_check_accepts_elisions(shown, actual):
    parsed, fragment = parse_shown(shown)
    assert not (fragment_mismatches(parsed, actual) if fragment else mismatches(parsed, actual))
