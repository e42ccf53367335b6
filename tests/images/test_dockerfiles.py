"""The three Dockerfiles, read statically: multi-stage, slim and non-root, running the right module on the
port the service listens on in the image, built from paths that exist and reach the build context, every
dependency from the service's hashed lock, and labelled with the OCI annotations of the project."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.images.lockfile import pyproject
from tests.images.project import SOURCE_URL

from linkpulse.admin.settings import AdminSettings
from linkpulse.ingest.settings import IngestSettings
from linkpulse.redirect.settings import PublisherSettings, RedirectSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("redirect", "ingest", "admin")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-case: FROM, RUN, COPY..."""
    args: str
    """Everything after the keyword and its `--flags`, continuation lines joined."""
    flags: dict[str, str]
    """`--from=builder`, `--mount=...`, by name."""


@dataclass
class Stage:
    base: str
    """The FROM image, with ARG defaults substituted."""
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV KEY=VALUE pairs of this stage, later ones winning."""
        values: dict[str, str] = {}
        for ins in self.all("ENV"):
            for pair in shlex.split(ins.args):
                key, sep, value = pair.partition("=")
                assert sep, f"ENV in the legacy `KEY value` form: {ins.args}"
                values[key] = value
        return values

    def labels(self) -> dict[str, str]:
        """LABEL key="value" pairs of this stage, `${ARG}` replaced by the default of the stage's ARG."""
        defaults: dict[str, str] = {}
        values: dict[str, str] = {}
        for ins in self.instructions:
            if ins.keyword == "ARG":
                name, _, default = ins.args.partition("=")
                defaults[name] = default
            elif ins.keyword == "LABEL":
                for pair in shlex.split(ins.args):
                    key, sep, value = pair.partition("=")
                    assert sep, f"LABEL in the legacy `key value` form: {ins.args}"
                    values[key] = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], value)
        return values


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: comments dropped, continuations joined, ARG defaults put into FROM."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue  # comments may sit inside a continued instruction, as Docker allows
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for entry in logical:
        keyword, _, rest = entry.partition(" ")
        flags: dict[str, str] = {}
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags[name] = value
            rest = rest.strip()
        ins = Instruction(keyword.upper(), rest, flags)
        if ins.keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif ins.keyword == "FROM":
            image, _, alias = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], image.strip())
            stages.append(Stage(base=image, name=alias.strip() or None))
        else:
            assert stages, f"{ins.keyword} before the first FROM"
            stages[-1].instructions.append(ins)
    return stages


def dockerignore() -> Callable[[str], bool]:
    """A predicate: is this context path (or a folder above it) excluded by the root .dockerignore?"""
    patterns = [
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "exceptions (!) need a real matcher"

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern):
            if token == "**/":
                out += "(?:.*/)?"
            elif token == "**":
                out += ".*"
            elif token == "*":
                out += "[^/]*"
            elif token == "?":
                out += "[^/]"
            elif token.startswith("["):
                out += token
            else:
                out += re.escape(token)
        return re.compile(out + r"\Z")

    compiled = [regex(p) for p in patterns]

    def ignored(path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(r.match(prefix) for r in compiled for prefix in prefixes)

    return ignored


@pytest.fixture(params=SERVICES)
def service(request: pytest.FixtureRequest) -> str:
    """Each service with a Dockerfile in turn."""
    return str(request.param)


@pytest.fixture
def stages(service: str) -> list[Stage]:
    """That service's Dockerfile, parsed into stages (builder first, runtime last)."""
    return parse((ROOT / "services" / service / "Dockerfile").read_text())


def test_image_is_multi_stage_on_one_pinned_slim_python(stages: list[Stage]) -> None:
    builder, runtime = stages[0], stages[-1]
    assert len(stages) >= 2 and builder.name == "builder"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", runtime.base), runtime.base
    # The venv's python is a symlink into the base image: both stages must be the same image.
    assert builder.base == runtime.base


def test_runtime_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the runtime stage never leaves root"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) != 0, "numeric, so Kubernetes' runAsNonRoot can check it"
    assert (uid, gid) == ("10001", "10001")


def test_runtime_holds_the_venv_and_no_build_tools(stages: list[Stage]) -> None:
    runtime = stages[-1]
    copies = runtime.all("COPY")
    assert [(c.flags.get("from"), c.args) for c in copies] == [("builder", "/opt/venv /opt/venv")]
    commands = " ".join(r.args for r in runtime.all("RUN"))
    for tool in ("gcc", "g++", "build-essential", "make ", "-dev", "apt-get install", "pip install"):
        assert tool not in commands, f"{tool!r} in the runtime stage"


def test_runtime_environment(stages: list[Stage]) -> None:
    runtime = stages[-1]
    env = runtime.env()
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert (env["PYTHONDONTWRITEBYTECODE"], env["PYTHONUNBUFFERED"]) == ("1", "1")
    assert [s.args for s in runtime.all("STOPSIGNAL")] == ["SIGTERM"]


def test_cmd_runs_the_service_module(service: str, stages: list[Stage]) -> None:
    [cmd] = stages[-1].all("CMD")
    module = f"linkpulse.{service}"
    assert json.loads(cmd.args) == ["python", "-m", module]  # exec form: python is PID 1 and gets SIGTERM
    assert importlib.util.find_spec(f"{module}.__main__") is not None


def _listens_on(service: str, env: dict[str, str]) -> tuple[str, int]:
    """Host and port the service binds with the image's environment (read through its settings class)."""
    if service == "redirect":
        redirect = RedirectSettings.from_env(env).http
        return redirect.host, redirect.port
    if service == "admin":
        admin = AdminSettings.from_env(env).http
        return admin.host, admin.port
    ingest = IngestSettings.from_env(env).ingest
    return ingest.metrics_host, ingest.metrics_port


def test_exposed_port_is_the_one_the_service_listens_on_in_the_image(service: str, stages: list[Stage]) -> None:
    runtime = stages[-1]
    env = {k: v for k, v in runtime.env().items() if k.startswith("LINKPULSE_")}
    host, port = _listens_on(service, env)
    assert [e.args for e in runtime.all("EXPOSE")] == [str(port)]
    assert port == {"redirect": 8000, "admin": 8001, "ingest": 9100}[service]
    # Probes and Services reach the pod's address, never its loopback.
    assert host == "0.0.0.0"
    # Redirect and admin listen on their settings' own default port; the image only changes the host.
    if service != "ingest":
        assert port == _listens_on(service, {})[1]


def test_redirect_spills_to_an_absolute_folder_the_image_prepared() -> None:
    runtime = parse((ROOT / "services" / "redirect" / "Dockerfile").read_text())[-1]
    spill = RedirectSettings.from_env(runtime.env()).publisher.spill_dir
    # The default is relative to the working directory, which is read-only in the chart.
    assert not PublisherSettings().spill_dir.startswith("/")
    assert spill.startswith("/") and spill in " ".join(r.args for r in runtime.all("RUN"))


def test_builder_installs_only_libs_and_this_service_from_paths_in_the_context(
    service: str, stages: list[Stage]
) -> None:
    ignored = dockerignore()
    builder = stages[0]
    sources = []
    for copy in builder.all("COPY"):
        assert "from" not in copy.flags
        *srcs, _dest = shlex.split(copy.args)
        sources += srcs
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not ignored(src), f"COPY {src}: excluded by .dockerignore"
    # libs, this service and its lock only: no other service, no tests, and never libs' `local` extra.
    assert sorted(sources) == sorted(
        [f"requirements/{service}.txt", "requirements/build.txt", "libs", f"services/{service}"]
    )
    installs = " ".join(r.args for r in builder.all("RUN") if "pip" in r.args)
    assert "[local]" not in installs and "--group" not in installs and " -e " not in installs
    assert f"./libs ./services/{service}" in installs


def _pip_commands(stage: Stage) -> list[tuple[int, list[str]]]:
    """(instruction index, argv) of every pip command in the stage's RUN lines, split at `&&`."""
    found = []
    for index, ins in enumerate(stage.instructions):
        if ins.keyword == "RUN":
            for command in ins.args.split("&&"):
                argv = shlex.split(command)
                if argv and argv[0] == "pip":
                    found.append((index, argv))
    return found


def test_builder_takes_every_dependency_from_the_lock_with_hashes(service: str, stages: list[Stage]) -> None:
    builder = stages[0]
    image_python = ["--python", "/opt/venv/bin/python"]
    lock_install = ["install", "--require-hashes", "--only-binary=:all:", "-r", f"requirements/{service}.txt"]
    commands = _pip_commands(builder)
    # Each pip command is one of these, so no package reaches either venv unchecked.
    allowed = [
        ["pip", "install", "--require-hashes", "--only-binary=:all:", "-r", "requirements/build.txt"],
        ["pip", *image_python, *lock_install],
        ["pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", "/tmp/wheels", "./libs",
         f"./services/{service}"],
        ["pip", *image_python, "install", "--no-deps", "--no-index", "/tmp/wheels/*.whl"],
        ["pip", *image_python, "check"],
    ]  # fmt: skip
    assert [argv for _, argv in commands] == allowed
    # The image's venv starts empty (no pip or setuptools of the base image), and the dependency layer is
    # built before the code is copied, so a code change does not re-download it.
    runs = " ".join(r.args for r in builder.all("RUN"))
    assert "python -m venv --without-pip /opt/venv" in runs
    code_copied = next(
        i for i, ins in enumerate(builder.instructions) if ins.keyword == "COPY" and ins.args == "libs libs"
    )
    assert all(index < code_copied for index, argv in commands if "--require-hashes" in argv)


def test_every_packaged_file_reaches_the_build_context(service: str) -> None:
    # A pattern like `*.sql` would drop the migrations from the admin image without any build error.
    ignored = dockerignore()
    for top in (ROOT / "libs", ROOT / "services" / service):
        for path in top.rglob("*"):
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and "__pycache__" not in path.parts and ".egg-info" not in relative:
                assert not ignored(relative), f"{relative} is excluded by .dockerignore"
    assert any((ROOT / "libs/src/linkpulse/db/migrations").glob("*.sql"))


@pytest.mark.parametrize(
    "path", [".venv", ".git", "tests", ".linkpulse", "charts", "libs/src/linkpulse/__pycache__", ".env"]
)
def test_dockerignore_keeps_local_state_out_of_the_context(path: str) -> None:
    assert dockerignore()(path)


OCI = "org.opencontainers.image."


def test_runtime_carries_the_oci_labels_of_the_project(service: str, stages: list[Stage]) -> None:
    labels = stages[-1].labels()
    project = pyproject(service)["project"]
    assert labels == {
        f"{OCI}title": f"linkpulse-{service}",
        f"{OCI}description": labels.get(f"{OCI}description", "<missing>"),
        f"{OCI}source": SOURCE_URL,
        f"{OCI}licenses": project["license"],
        # Without build arguments: the package's version, and no claim about a commit.
        f"{OCI}version": project["version"],
        f"{OCI}revision": "unknown",
    }
    assert project["license"] == "Apache-2.0"
    assert labels[f"{OCI}description"].startswith(f"Linkpulse {service}: ")
    # A label in the builder stage would not reach the image.
    assert all(not stage.all("LABEL") for stage in stages[:-1])


def test_version_and_revision_come_from_build_arguments_after_every_layer(stages: list[Stage]) -> None:
    runtime = stages[-1]
    [label] = runtime.all("LABEL")
    pairs = dict(pair.partition("=")[::2] for pair in shlex.split(label.args))
    assert (pairs[f"{OCI}version"], pairs[f"{OCI}revision"]) == ("${VERSION}", "${REVISION}")
    # A RUN or COPY after the ARGs would be rebuilt for every new commit: they come after the last layer.
    args = [i for i, ins in enumerate(runtime.instructions) if ins.keyword == "ARG"]
    layers = [i for i, ins in enumerate(runtime.instructions) if ins.keyword in {"RUN", "COPY", "ADD"}]
    assert [runtime.instructions[i].args.partition("=")[0] for i in args] == ["VERSION", "REVISION"]
    assert min(args) > max(layers)
