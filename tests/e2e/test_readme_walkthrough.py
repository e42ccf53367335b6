"""The README's walk-throughs, run as a newcomer runs them against a stack `linkpulse up` started.

A fenced block is checked when the line before it is an HTML comment naming how:

- `<!-- walkthrough: printed by linkpulse up -->`: each line matches a whole line of what `up` prints, in
  order; a line holding only `...` stands for any number of lines left out.
- `<!-- walkthrough: commands -->` on a ```sh block: each command runs in one bash (variables carry over,
  as in a terminal), from a folder holding the stack's `.linkpulse` and a `.venv/bin/linkpulse`, and must
  exit 0. Its trailing `# comment` says what it prints:
  - `302` or `302 Location: https://example.com/`: a `curl -i` response with that status (and that
    header, whose name is read in any case, with exactly that value);
  - `"clicks": 1, "bot_clicks": 1`: the output is a JSON object holding these members with these values;
  - any other text: a line of the output contains it;
  - `after a moment: <any of those>`: the command reads what ingest stores asynchronously, so it is
    run again until its output holds (for at most `SETTLE` seconds).

In text, `...` stands for any text within a line and a run of spaces for a run of spaces. README URLs
on the default ports (8000, 8001, 9100) stand for the test stack's, which runs on free ports.
Every shell block (```sh, ```bash) is either marked or lies in a section listed in `SKIPPED`, with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.polling import eventually

README = Path(__file__).parents[2] / "README.md"
PRINTED = "printed by linkpulse up"
COMMANDS = "commands"
SHELL_LANGS = {"sh", "bash", "shell", "console"}
SETTLE = 10.0
COMMAND_TIMEOUT = 60.0
DEFAULT_URLS = {
    "http://127.0.0.1:8000": "redirect_url",
    "http://127.0.0.1:8001": "admin_url",
    "http://127.0.0.1:9100": "ingest_url",
}
SKIPPED = {
    "The two commands": "install from the index and the whole suite: CI runs them (.ci/run)",
    "Run with Docker Compose": "needs docker and the images' registries; tests/compose validates the file",
    "Install on Kubernetes with Helm": "needs docker, a registry and a Kubernetes cluster",
    "Develop with skaffold": "needs docker, skaffold and a Kubernetes cluster",
    "Benchmark: `linkpulse bench`": "needs wrk and nginx and minutes; tests/e2e/test_bench.py runs the bench",
    "Dependencies and the lock": "needs uv and the package index; tests/images/test_lock.py and test_audit.py",
}
_MARKER = re.compile(r"<!-- walkthrough: (.+?) -->")
_HTTP = re.compile(r"(\d{3})(?: ([!#$%&'*+.^_`|~0-9A-Za-z-]+): (.+))?")
_AFTER_A_MOMENT = "after a moment: "


@dataclass(frozen=True)
class Block:
    """A fenced block of the README: its section, its line, its language, its walk-through marker."""

    section: str
    line: int
    lang: str
    marker: str | None
    text: str


def readme_blocks(markdown: str) -> list[Block]:
    """Every fenced block of `markdown`, with the `##` section it is in and the marker just above it."""
    blocks: list[Block] = []
    section, opened, lang, body = "", 0, "", list[str]()
    lines = markdown.splitlines()
    for n, line in enumerate(lines, 1):
        if opened:
            if line.strip() == "```":
                marker = _MARKER.fullmatch(lines[opened - 2].strip()) if opened > 1 else None
                blocks.append(Block(section, opened, lang, marker[1] if marker else None, "\n".join(body)))
                opened = 0
            else:
                body.append(line)
        elif line.startswith("```"):
            opened, lang, body = n, line[3:].strip(), []
        elif line.startswith("## "):
            section = line[3:].strip()
    return blocks


def split_commands(script: str) -> list[tuple[str, str | None]]:
    """The commands of a shell block (backslash-continued lines joined), each with its trailing comment."""
    commands: list[tuple[str, str | None]] = []
    pending = ""
    for line in script.splitlines():
        if not pending and not line.strip():
            continue
        pending += line
        if line.endswith("\\"):
            pending += "\n"
            continue
        commands.append((pending, _comment(pending)))
        pending = ""
    assert not pending, f"a command ends with a backslash: {pending!r}"
    return commands


def _comment(command: str) -> str | None:
    """The text of the comment ending `command`, as bash reads one: a `#` starting a word, outside quotes."""
    quote, escaped = "", False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or command[i - 1] in " \t\n"):
            text = command[i + 1 :].strip()
            assert "\n" not in text, f"a comment inside a continued command: {command!r}"
            return text
    return None


def text_pattern(text: str) -> re.Pattern[str]:
    """`text` as a pattern: `...` is any text within a line, a run of spaces any run of spaces."""
    parts = re.split(r"(\.\.\.| +)", text)
    return re.compile("".join(".+?" if p == "..." else " +" if p.isspace() else re.escape(p) for p in parts))


def unmet(expected: str, output: str) -> str:
    """Why `output` is not what the comment `expected` says it prints; "" when it is."""
    if http := _HTTP.fullmatch(expected):
        head = output.partition("\r\n\r\n")[0].split("\r\n")
        status = head[0].split(" ")[1] if head[0].startswith("HTTP/") else None
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in head[1:])}
        if status != http[1]:
            return f"status {status}, not {http[1]}"
        if http[2] and headers.get(http[2].lower()) != http[3]:
            return f"{http[2]}: {headers.get(http[2].lower())}, not {http[3]}"
        return ""
    if expected.startswith('"'):
        members = json.loads("{" + expected + "}")
        try:
            got = json.loads(output)
        except ValueError:
            return "not JSON"
        if not isinstance(got, dict):
            return "not a JSON object"
        wrong = {k: got.get(k) for k, v in members.items() if json.dumps(got.get(k)) != json.dumps(v)}
        return f"but {json.dumps(wrong)}" if wrong else ""
    pattern = text_pattern(expected)
    return "" if any(pattern.search(line) for line in output.splitlines()) else "no line holds it"


def printed_mismatch(shown: list[str], printed: list[str]) -> str:
    """Where the README's `shown` lines differ from the `printed` ones ("" if nowhere); `...` skips lines."""
    at, gap = 0, False
    for line in shown:
        if line.strip() == "...":
            gap = True
            continue
        pattern = text_pattern(line)
        while gap and at < len(printed) and not pattern.fullmatch(printed[at]):
            at += 1
        if at >= len(printed) or not pattern.fullmatch(printed[at]):
            return f"{line!r} is not printed" + (f" (line {at + 1}: {printed[at]!r})" if at < len(printed) else "")
        at, gap = at + 1, False
    return "" if gap or at == len(printed) else f"printed past the README's last line: {printed[at]!r}"


def on_stack(text: str, info: dict[str, Any]) -> str:
    """`text` with the README's default URLs replaced by the test stack's."""
    for url, key in DEFAULT_URLS.items():
        text = re.sub(re.escape(url) + r"(?!\d)", lambda _, key=key: str(info[key]), text)
    return text


class Shell:
    """One bash reading commands as a terminal would; each command's output (stderr too) and status apart."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._end = f"\n{secrets.token_hex(8)} "

    @classmethod
    async def start(cls, cwd: Path, env: dict[str, str]) -> Shell:
        proc = await asyncio.create_subprocess_exec(
            "bash", "--noprofile", "--norc", cwd=cwd, env=env, limit=1 << 20,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        return cls(proc)

    async def run(self, command: str) -> tuple[int, str]:
        """Run `command` (stdin closed, so it cannot read the commands after it); its status and output."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        # The braces keep assignments in this shell; the end marker follows on a line of its own.
        self._proc.stdin.write(f"{{ {command}\n}} </dev/null\nprintf '%s%d\\n' '{self._end}' \"$?\"\n".encode())
        await self._proc.stdin.drain()
        data = await asyncio.wait_for(self._proc.stdout.readuntil(self._end.encode()), COMMAND_TIMEOUT)
        status = int(await self._proc.stdout.readline())
        return status, data.decode()[: -len(self._end)]

    async def close(self) -> None:
        """End the shell: at the end of its input, or killed if a command still hangs."""
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 5)
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()


@pytest.fixture(scope="module")
def newcomer_env() -> dict[str, str]:
    """A newcomer's environment: no LINKPULSE_* or OTEL_* setting, no proxy between curl and 127.0.0.1."""
    dropped = ("LINKPULSE_", "OTEL_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped) and "proxy" not in k.lower()}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out as the README's install leaves the checkout: `.venv/bin/linkpulse` in it."""
    root = tmp_path_factory.mktemp("checkout")
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "linkpulse").symlink_to(Path(sysconfig.get_path("scripts")) / "linkpulse")
    return root


@pytest.fixture(scope="module")
def up(checkout: Path, newcomer_env: dict[str, str]) -> Iterator[tuple[dict[str, Any], str]]:
    """`linkpulse up --detach` on free ports in `checkout`: stack.json as a dict, and what `up` printed."""
    linkpulse = str(checkout / ".venv" / "bin" / "linkpulse")
    ports = ("--redirect-port", "0", "--admin-port", "0", "--ingest-port", "0")
    result = subprocess.run([linkpulse, "up", "--detach", *ports], cwd=checkout, env=newcomer_env,
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    try:
        yield json.loads((checkout / ".linkpulse" / "stack.json").read_text()), result.stdout
    finally:
        subprocess.run([linkpulse, "down"], cwd=checkout, env=newcomer_env, capture_output=True, timeout=120)


BLOCKS = readme_blocks(README.read_text())
SHELL_BLOCKS = [b for b in BLOCKS if b.lang in SHELL_LANGS or b.marker == COMMANDS]


def test_a_comment_that_promises_what_is_not_printed_is_unmet() -> None:
    link = '{"code":"hello","clicks":0,"bot_clicks":1}'
    assert unmet('"clicks": 0, "bot_clicks": 1', link) == ""
    assert unmet('"clicks": 1', link) == 'but {"clicks": 0}'
    assert unmet('"clicks": false', '{"clicks": 0}') != ""
    redirect = "HTTP/1.1 302 Found\r\nlocation: https://example.com/\r\n\r\n"
    assert unmet("302 Location: https://example.com/", redirect) == ""
    assert unmet("301", redirect) == "status 302, not 301"
    assert unmet("302 Location: https://example.org/", redirect) != ""
    assert unmet("key      lp_...", "id   2\nkey  lp_x1") == ""
    assert unmet("key lp_...", "key\nlp_x1") != ""  # text is matched within one line
    assert printed_mismatch(["a", "...", "c"], ["a", "b", "b", "c"]) == ""
    assert printed_mismatch(["a", "c"], ["a", "b", "c"]) != ""
    assert printed_mismatch(["a", "..."], ["a"]) == ""


def test_a_comment_is_read_as_bash_reads_it() -> None:
    script = 'KEY=$(python3 -c \'print("#1")\')\ncurl -d \'{"a": "# no"}\' \\\n  http://x/#frag   # 302\n'
    assert split_commands(script) == [
        ("KEY=$(python3 -c 'print(\"#1\")')", None),
        ('curl -d \'{"a": "# no"}\' \\\n  http://x/#frag   # 302', "302"),
    ]


@pytest.mark.slow
def test_the_readme_shows_what_linkpulse_up_prints(up: tuple[dict[str, Any], str]) -> None:
    info, printed = up
    [block] = [b for b in BLOCKS if b.marker == PRINTED]
    shown = on_stack(block.text, info).splitlines()
    assert printed_mismatch(shown, printed.splitlines()) == "", printed


@pytest.mark.slow
@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: f"README.md:{b.line}")
async def test_each_readme_command_prints_what_its_comment_says(
    block: Block, request: pytest.FixtureRequest, checkout: Path, newcomer_env: dict[str, str]
) -> None:
    if block.marker is None:
        assert block.section in SKIPPED, f"README.md:{block.line}: mark the block or list {block.section!r} in SKIPPED"
        pytest.skip(f"{block.section}: {SKIPPED[block.section]}")
    assert block.marker == COMMANDS, f"README.md:{block.line}: unknown walkthrough marker {block.marker!r}"
    info, _ = request.getfixturevalue("up")
    shell = await Shell.start(checkout, newcomer_env)
    try:
        for command, expected in split_commands(on_stack(block.text, info)):
            settle = expected is not None and expected.startswith(_AFTER_A_MOMENT)
            expected = expected.removeprefix(_AFTER_A_MOMENT) if expected else expected

            def holds(result: tuple[int, str], expected: str | None = expected) -> bool:
                return result[0] == 0 and (expected is None or not unmet(expected, result[1]))

            async def run(command: str = command) -> tuple[int, str]:
                return await shell.run(command)

            status, output = await eventually(run, command, timeout=SETTLE, accept=holds) if settle else await run()
            assert status == 0, f"{command}\nexited {status}:\n{output}"
            assert expected is None or not unmet(expected, output), (
                f"{command}\nREADME says it prints {expected!r}, {unmet(expected, output)}:\n{output}"
            )
    finally:
        await shell.close()
