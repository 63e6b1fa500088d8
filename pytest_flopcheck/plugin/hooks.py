"""The pytest plugin: options, generated tests, evidence, xdist aggregation.

Tests are generated only when ``--flopcheck`` (or the ``flopcheck`` ini key) names models. The
run state lives in one :class:`FlopcheckRun` object registered as a plugin. Outcomes are
recorded on the controller from pytest's own reports (``pytest_runtest_logreport``), with and
without xdist; the evidence is rendered from the resulting
:class:`~pytest_flopcheck.evidence.record.RunRecord` and published once, whole, by the controller.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import attrs
import pytest

from pytest_flopcheck.analytic.tree import CostNode
from pytest_flopcheck.evidence import render as evidence
from pytest_flopcheck.evidence.record import (
    COMPLETE,
    INTERRUPTED,
    NOTHING_RUN,
    NOTHING_VERIFIED,
    CheckRecord,
    ErrorRecord,
    RunRecord,
    StageTotal,
    comparison_from_json,
)
from pytest_flopcheck.model.registration import RegistrationError, load_registry
from pytest_flopcheck.names import printable, shorten
from pytest_flopcheck.plugin.scheduling import NODE_PREFIX
from pytest_flopcheck.reference.counting import DEVICES, CoverageGap
from pytest_flopcheck.reference.store import CACHED, COUNTED, ReferenceStore
from pytest_flopcheck.verification.compare import Comparison
from pytest_flopcheck.verification.session import (
    PIPELINE,
    Case,
    CheckError,
    CheckSkipped,
    FlopcheckSession,
    SelectionError,
    parse_list,
)

DEFAULT_OUTPUT = "tmp/profile-output"
_WORKER_KEY = "flopcheck_reference_runs"
_WARNINGS_KEY = "flopcheck_warnings"
_RUN_ID_KEY = "flopcheck_run_id"
_STORE_KEY = "flopcheck_store"
_RESULT = "flopcheck"
_CAUSE = "flopcheck_cause"
EVIDENCE_WRITE_FAILED = 3
"""Exit status when the evidence cannot be written (full disk, unwritable output)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flopcheck", "verify analytic FLOP models against the real models")
    group.addoption(
        "--flopcheck",
        metavar="NAME[,NAME]",
        default=None,
        help="generate one test per layer and per total for these registered models (ini: flopcheck)",
    )
    group.addoption(
        "--flopcheck-workloads",
        metavar="ID[,ID]",
        default=None,
        help="only these workload ids (default: every standard workload; ini: flopcheck_workloads)",
    )
    group.addoption(
        "--flopcheck-device",
        metavar="DEVICE",
        default=None,
        help=f"device for the reference run: {'|'.join(DEVICES)} (default meta; ini: flopcheck_device)",
    )
    group.addoption(
        "--flopcheck-output",
        metavar="DIR",
        default=None,
        help=f"evidence directory (default {DEFAULT_OUTPUT}; ini: flopcheck_output)",
    )
    group.addoption(
        "--flopcheck-strict",
        action="store_true",
        default=None,
        help="fail instead of skip when a reference cannot run here (ini: flopcheck_strict)",
    )
    group.addoption(
        "--flopcheck-recount",
        action="store_true",
        default=False,
        help="count every reference again instead of reusing counts cached by earlier runs "
        "(--cache-clear does the same)",
    )
    parser.addini("flopcheck", "models to verify, as --flopcheck", default="")
    parser.addini("flopcheck_workloads", "workload ids to verify, as --flopcheck-workloads", default="")
    parser.addini("flopcheck_device", "reference device, as --flopcheck-device", default="meta")
    parser.addini("flopcheck_output", "evidence directory, as --flopcheck-output", default=DEFAULT_OUTPUT)
    parser.addini("flopcheck_strict", "error when a reference cannot run (true/false)", default="false")


def _option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name)
    return value if value is not None else config.getini(name)


def _label(config: pytest.Config, name: str) -> str:
    """How the user gave a setting: the command-line option, else its ini key."""
    return "--" + name.replace("_", "-") if config.getoption(name) is not None else f"ini key {name}"


_NEEDS_MODELS = ("flopcheck_workloads", "flopcheck_device", "flopcheck_output", "flopcheck_strict")


def _truth(value: object) -> bool | None:
    """A flag from the command line (bool) or an ini file (text); None if it is neither."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return (
        True
        if text in ("1", "true", "yes", "on")
        else False
        if text in ("0", "false", "no", "off", "")
        else None
    )


def _selects_generated(markexpr: str) -> bool:
    """True if ``-m`` keeps only tests with the flopcheck marker (``flopcheck``, ``flopcheck and
    not slow``), which select nothing when no model is named."""
    words = markexpr.replace("(", " ").replace(")", " ").split()
    return "flopcheck" in words and "not" not in words and "or" not in words


def _conftest_plugins(config: pytest.Config) -> list[tuple[str, object]]:
    """Plugins already loaded by pytest (conftest modules) that implement flopcheck hooks,
    found with pluggy's own hook-implementation marker."""
    from pytest_flopcheck.model.registration import plugin_manager

    pm = plugin_manager()
    found = []
    for plugin in config.pluginmanager.get_plugins():
        if plugin is None:
            continue
        names = [attr for attr in dir(plugin) if attr.startswith("flopcheck")]
        if any(pm.parse_hookimpl_opts(plugin, attr) for attr in names):
            found.append((config.pluginmanager.get_name(plugin) or repr(plugin), plugin))
    return found


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "flopcheck: a test generated by pytest-flopcheck")
    try:
        _configure(config)
    except (RegistrationError, SelectionError, evidence.OutputError) as exc:
        raise pytest.UsageError(str(exc)) from None


def _configure(config: pytest.Config) -> None:
    raw_models = _option(config, "flopcheck")
    models = parse_list(raw_models)
    if not models:
        if config.getoption("flopcheck") is not None:
            raise pytest.UsageError(
                f"--flopcheck {shorten(raw_models)} names no model: give one or more of "
                f"{load_registry(_conftest_plugins(config)).describe()}"
            )
        given = [name for name in _NEEDS_MODELS if config.getoption(name) is not None]
        if config.getoption("flopcheck_recount"):
            given.append("flopcheck_recount")
        if given:
            option = "--" + given[0].replace("_", "-")
            raise pytest.UsageError(f"{option} needs --flopcheck=NAME[,NAME] to name the models to verify")
        if _selects_generated(config.option.markexpr or ""):
            raise pytest.UsageError(
                f"-m {config.option.markexpr!r} selects the tests pytest-flopcheck generates, but none are "
                "generated without --flopcheck=NAME[,NAME]; registered models: "
                f"{load_registry(_conftest_plugins(config)).describe()}"
            )
        return
    device = str(_option(config, "flopcheck_device")).strip()
    if device not in DEVICES:
        raise pytest.UsageError(
            f"{_label(config, 'flopcheck_device')}: device {shorten(device)} is not supported; "
            f"allowed: {', '.join(DEVICES)}"
        )
    raw_workloads = _option(config, "flopcheck_workloads")
    workloads = parse_list(raw_workloads)
    if not workloads and str(raw_workloads).strip():
        raise pytest.UsageError(
            f"{_label(config, 'flopcheck_workloads')} {shorten(raw_workloads)} names no workload: "
            "give one or more workload ids, or leave it out for every standard workload"
        )
    if not str(_option(config, "flopcheck_output")).strip():
        raise pytest.UsageError(
            f"{_label(config, 'flopcheck_output')} is empty: give a directory (default {DEFAULT_OUTPUT})"
        )
    strict = _truth(_option(config, "flopcheck_strict"))
    if strict is None:
        raise pytest.UsageError(
            f"ini key flopcheck_strict {shorten(config.getini('flopcheck_strict'))} is not allowed: "
            "use true or false"
        )
    registry = load_registry(_conftest_plugins(config))
    try:
        session = FlopcheckSession(registry, models, workloads, device)
    except SelectionError as exc:
        field = "flopcheck" if exc.field == "models" else "flopcheck_workloads"
        raise pytest.UsageError(f"{_label(config, field)}: {exc.detail}") from None
    config.pluginmanager.register(FlopcheckRun(config, session, strict), "flopcheck-run")


class FlopcheckItem(pytest.Item):
    """One generated check. Its setup produces what it depends on (an analytic tree, a
    reference count): a failure there is an error that points at its cause, a reference that
    cannot run here is a skip."""

    def __init__(self, *, case: Case, run: FlopcheckRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.run = run
        self.add_marker(pytest.mark.flopcheck)

    def setup(self) -> None:
        self.run.prepare(self)

    def runtest(self) -> None:
        self.run.run_case(self)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"flopcheck {self.name}"


class FlopcheckCollector(pytest.Collector):
    """The parent of every generated item (they come from registrations, not files)."""

    def __init__(self, *, run: FlopcheckRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run

    def collect(self) -> list[pytest.Item]:
        return [
            FlopcheckItem.from_parent(self, name=case.name, case=case, run=self.run)
            for case in self.run.session.plan()
        ]


class _Pending:
    """The reports of one check seen so far (setup, call, teardown)."""

    __slots__ = ("cause", "message", "outcome", "payload")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.message = ""
        self.payload: dict[str, Any] | None = None
        self.cause: dict[str, Any] | None = None


def _reason(report: pytest.TestReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None and report.skipped:
        return str(wasxfail) or "expected to fail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext


def _property(report: pytest.TestReport, name: str) -> dict[str, Any] | None:
    for key, value in report.user_properties:
        if key == name:
            return json.loads(str(value))  # type: ignore[no-any-return]
    return None


class FlopcheckRun:
    """Everything one pytest process knows about its flopcheck run."""

    def __init__(self, config: pytest.Config, session: FlopcheckSession, strict: bool) -> None:
        self.config = config
        self.session = session
        self.started = time.time()
        self.strict = strict
        self.is_worker = hasattr(config, "workerinput")
        self.selected: list[str] | None = None
        self.pending: dict[str, _Pending] = {}
        self.checks: dict[str, CheckRecord] = {}
        self.causes: dict[str, dict[str, Any]] = {}
        self.worker_runs: list[dict[str, Any]] = []
        self.worker_warnings: list[str] = []
        self.record: RunRecord | None = None
        self.staged: evidence.StagedRun | None = None
        self.published: Path | None = None
        self.publish_error: str | None = None
        self.own_html = False
        if self.is_worker:
            workerinput = config.workerinput  # type: ignore[attr-defined]
            self.run_id = str(workerinput[_RUN_ID_KEY])
            self.shared_store: str | None = workerinput.get(_STORE_KEY)
            return
        self.run_id = evidence.new_run_id()
        self.shared_store = None
        if config.option.collectonly:
            return  # nothing runs, so nothing is published
        explicit = config.getoption("flopcheck_output")
        raw = str(_option(config, "flopcheck_output"))
        output = Path(os.path.expanduser(raw))
        if not output.is_absolute():
            output = (config.invocation_params.dir if explicit else config.rootpath) / output
        label = "--flopcheck-output" if explicit else "ini key flopcheck_output"
        self.staged = evidence.StagedRun(output, self.run_id, label, raw)
        # Without pytest's cache, a run-private directory still lets xdist workers share counts;
        # it is known before any worker is configured, and removed before publishing.
        self.shared_store = str(self.staged.staging / ".references")
        if config.pluginmanager.hasplugin("html") and not config.getoption("htmlpath", None):
            # pytest-html configures after us (we run tryfirst) and writes at session end, into
            # the staging directory; the file is checked and published with the rest.
            config.option.htmlpath = str(self.staged.staging / "flopcheck" / "report.html")
            config.option.self_contained_html = True
            self.own_html = True

    # -- the reference store ------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        options = self.config.option
        recount = bool(options.flopcheck_recount or getattr(options, "cacheclear", False))
        cache = getattr(self.config, "cache", None)
        cached: Path | None = None
        problems: list[str] = []
        if cache is not None:
            try:
                cached = Path(cache.mkdir("flopcheck-references"))
            except OSError as exc:  # a file in its place, a read-only project
                problems.append(
                    f"pytest's cache directory cannot hold the reference cache ({exc.strerror or exc})"
                )
        # Without pytest's cache, a run-private directory still lets xdist workers share counts;
        # it is known before any worker is configured, and removed before publishing.
        shared = Path(self.shared_store) if self.shared_store else None
        store = ReferenceStore.first_usable(
            [(cached, "in pytest's cache"), (shared, "of this run")], self.run_id, reuse=not recount
        )
        store.problems[:0] = problems
        if cache is not None and (store.directory is None or store.directory != cached):
            store.problems.append(
                "the counts of this run are not kept for later runs"
                + ("" if store.directory is not None else ", nor shared between xdist workers")
            )
        self.session.store = store

    # -- collection ---------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        collector = FlopcheckCollector.from_parent(
            session, name="flopcheck", path=self.config.rootpath, nodeid="flopcheck", run=self
        )
        items.extend(collector.collect())

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.is_worker:
            self.selected = [item.nodeid for item in session.items if isinstance(item, FlopcheckItem)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.selected is None:
            self.selected = [nodeid for nodeid in ids if nodeid.startswith(NODE_PREFIX)]

    # -- running ------------------------------------------------------------------------------

    def prepare(self, item: FlopcheckItem) -> None:
        try:
            self.session.prepare(item.case)
        except CheckSkipped as skipped:
            if self.strict:
                pytest.fail(f"reference could not run (--flopcheck-strict): {skipped.reason}", pytrace=False)
            pytest.skip(skipped.reason)
        except CheckError as error:
            cause = error.cause
            item.user_properties.append((_CAUSE, json.dumps(attrs.asdict(cause))))
            pytest.fail(cause.message, pytrace=False)

    def run_case(self, item: FlopcheckItem) -> None:
        case = item.case
        try:
            outcome = self.session.evaluate(case)
        except KeyError as missing:
            pytest.fail(f"{case.id}: {missing.args[0]}", pytrace=False)
        payload = {
            "comparisons": [c.as_dict() for c in outcome.comparisons],
            "gaps": [g.as_dict() for g in outcome.gaps],
        }
        item.user_properties.append((_RESULT, json.dumps(payload)))
        if not outcome.passed:
            pytest.fail(_failure_message(outcome.comparisons, outcome.gaps), pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # Detail only for checks that did not pass: a passed check's numbers are in evidence.json,
        # and 10,000 embedded tables would make the page too heavy to open.
        if isinstance(item, FlopcheckItem) and call.when == "call" and report.failed:
            payload = dict(item.user_properties).get(_RESULT)
            if payload and self.config.pluginmanager.hasplugin("html"):
                from pytest_html import extras

                comparisons = json.loads(str(payload))["comparisons"]
                report.extras = [  # type: ignore[attr-defined]
                    *getattr(report, "extras", []),
                    extras.html(evidence.comparison_html(comparisons)),
                ]
        return report

    # -- outcomes, from pytest's own reports (on the controller) -------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker or not report.nodeid.startswith(NODE_PREFIX):
            return
        if report.when not in ("setup", "call", "teardown"):  # xdist: its worker died running it
            crashed = self.pending.pop(report.nodeid, _Pending())
            crashed.outcome, crashed.message, crashed.payload = "failed", report.longreprtext, None
            self._finish(report.nodeid, crashed)
            return
        if report.when == "setup" and report.passed:
            return  # nothing to record yet (the common case: keep it cheap on the controller)
        if report.when == "teardown" and report.passed:
            category = ""
        else:
            status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
            category = status[0] if status else ""
        pending = self.pending.setdefault(report.nodeid, _Pending())
        if report.when == "call":
            pending.outcome = category or pending.outcome
            pending.payload = _property(report, _RESULT)
            if category in ("failed", "xfailed"):
                pending.message = _reason(report) if category == "xfailed" else report.longreprtext
        elif category in ("error", "skipped", "xfailed"):
            pending.outcome = category
            pending.message = _reason(report) if category != "error" else report.longreprtext
            pending.cause = pending.cause or _property(report, _CAUSE)
        if report.when == "teardown":
            self._finish(report.nodeid, self.pending.pop(report.nodeid))

    def _finish(self, nodeid: str, pending: _Pending) -> None:
        case = Case.parse(nodeid[len(NODE_PREFIX) :])
        if case is None or pending.outcome is None:
            return
        payload = pending.payload or {}
        cause = pending.cause
        if cause is not None:
            known = self.causes.setdefault(cause["key"], dict(cause, tests=0))
            known["tests"] += 1
        self.checks[nodeid] = CheckRecord(
            test=nodeid[len(NODE_PREFIX) :],
            kind=case.kind,
            model=case.model,
            workload=case.workload,
            stage=case.stage,
            layer=case.layer,
            outcome=pending.outcome,
            message=evidence.one_line(pending.message, 2000) if pending.outcome != "passed" else "",
            cause=cause["key"] if cause else None,
            comparisons=tuple(comparison_from_json(c) for c in payload.get("comparisons", ())),
            gaps=tuple(CoverageGap(**g) for g in payload.get("gaps", ())),
        )

    # -- xdist ----------------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_RUN_ID_KEY] = self.run_id
        if self.shared_store:
            node.workerinput[_STORE_KEY] = self.shared_store

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        output = getattr(node, "workeroutput", {})
        if output.get(_WORKER_KEY):
            self.worker_runs.extend(json.loads(output[_WORKER_KEY]))
        if output.get(_WARNINGS_KEY):
            self.worker_warnings.extend(json.loads(output[_WARNINGS_KEY]))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "load":
            return None  # the user chose a scheduling: keep it
        from pytest_flopcheck.plugin.scheduling import make_scheduler

        return make_scheduler(config, log)

    # -- evidence -------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        if self.is_worker:
            runs = [r.as_dict() for r in self.session.reference_runs]
            self.config.workeroutput[_WORKER_KEY] = json.dumps(runs)  # type: ignore[attr-defined]
            self.config.workeroutput[_WARNINGS_KEY] = json.dumps(self._warnings())  # type: ignore[attr-defined]
            return (yield)
        if self.staged is None:
            return (yield)
        self.record = self._record(session)
        if self.record.verdict == NOTHING_VERIFIED and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        html_error: BaseException | None = None
        try:
            yield  # pytest-html renders the report (with our summary section) into the staging dir
        except (OSError, KeyboardInterrupt) as exc:
            html_error = exc
        self._publish(session, html_error)
        return None

    def _publish(self, session: pytest.Session, html_error: BaseException | None) -> None:
        staged, record = self.staged, self.record
        assert staged is not None
        assert record is not None
        try:
            if html_error is not None:
                raise html_error
            html = staged.staging / "flopcheck" / "report.html"
            user_html = self.config.getoption("htmlpath", None)
            if not self.own_html and user_html and Path(user_html).is_file():
                shutil.copyfile(user_html, html)
            if html.exists() and not _html_complete(html):
                raise OSError(f"report.html was not written completely ({html.stat().st_size:,} bytes)")
            final = staged.final
            staged.write("flopcheck/evidence.json", evidence.dumps_lines(record.to_json()))
            staged.write("flopcheck/summary.md", evidence.summary_markdown(record, final / "flopcheck"))
            shutil.rmtree(staged.staging / ".references", ignore_errors=True)
            self.published = staged.publish() / "flopcheck"
        except KeyboardInterrupt:
            staged.discard()
            self.publish_error = "flopcheck: interrupted while writing the evidence; nothing was published"
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        except OSError as exc:
            staged.discard()
            self.publish_error = (
                f"flopcheck: the evidence could not be written under {str(staged.output)!r} "
                f"({evidence.describe_os_error(exc) if exc.strerror else exc}); nothing was published"
            )
            session.exitstatus = EVIDENCE_WRITE_FAILED
        finally:
            if self.own_html:
                self._silence_html_link()

    def _silence_html_link(self) -> None:
        """pytest-html would print a link to the staging path; our terminal summary prints the
        published one instead."""
        from pytest_html.basereport import BaseReport

        for plugin in self.config.pluginmanager.get_plugins():
            if isinstance(plugin, BaseReport):
                self.config.pluginmanager.unregister(plugin)

    def _warnings(self) -> list[str]:
        """This process's warnings about the run: counts that could not be cached or read back."""
        return [*self.session.store.problems, *self.session.notes]

    def _record(self, session: pytest.Session) -> RunRecord:
        selected = self.selected or []
        order = {nodeid: i for i, nodeid in enumerate(selected)}
        checks = sorted(self.checks.items(), key=lambda item: order.get(item[0], len(order)))
        finished = len(checks)
        if not selected:
            status = NOTHING_RUN
        elif finished < len(selected) or session.exitstatus == pytest.ExitCode.INTERRUPTED:
            status = INTERRUPTED
        else:
            status = COMPLETE
        registrations = [self.session.registration(m) for m in self.session.models]
        packages = {p for reg in registrations for p in reg.reference_packages}
        return RunRecord(
            run_id=self.run_id,
            created_utc=evidence.utc_now(),
            status=status,
            selected=len(selected),
            environment=evidence.environment(self.config.rootpath, self.session.device, packages),
            selection={
                "models": self.session.models,
                "workloads": {m: self.session.workloads(m) for m in self.session.models},
                "device": self.session.device,
            },
            checks=tuple(check for _, check in checks),
            errors=tuple(
                ErrorRecord(**{k: v for k, v in cause.items() if k != "key"}, cause=key)
                for key, cause in self.causes.items()
            ),
            totals=tuple(self._totals([check for _, check in checks])),
            warnings=tuple(dict.fromkeys([*self._warnings(), *self.worker_warnings])),
            timing={
                "duration_s": round(time.time() - self.started, 3),
                "reference_runs": _merge_runs(
                    [r.as_dict() for r in self.session.reference_runs] + self.worker_runs
                ),
            },
        )

    def _totals(self, checks: list[CheckRecord]) -> list[StageTotal]:
        counted = {
            (c.model, c.workload, c.stage): c.comparisons[0].reference
            for c in checks
            if c.kind == "test_end_to_end" and c.comparisons
        }
        totals = []
        for model in self.session.models:
            reg = self.session.registration(model)
            for workload in self.session.workloads(model):
                try:
                    runs: dict[str, int] | None = self.session.runs(model, workload)
                except CheckError:
                    runs = None
                rows = []
                for stage in reg.stages:
                    tree = self.session.tree_or_cause(model, workload, stage.name)
                    analytic = tree.total if isinstance(tree, CostNode) else None
                    rows.append(
                        StageTotal(
                            model,
                            workload,
                            stage.name,
                            runs[stage.name] if runs else None,
                            analytic.flops if analytic is not None else None,
                            counted.get((model, workload, stage.name)),
                            analytic.params if analytic is not None else None,
                        )
                    )
                totals += rows
                if reg.multiplicities is not None:
                    complete = runs is not None and all(r.analytic_flops is not None for r in rows)
                    measured = runs is not None and all(r.reference_flops is not None for r in rows)
                    totals.append(
                        StageTotal(
                            model,
                            workload,
                            PIPELINE,
                            1,
                            _per_generation(rows, runs, "analytic_flops") if complete else None,
                            _per_generation(rows, runs, "reference_flops") if measured else None,
                            None,
                        )
                    )
        return totals

    # -- presentation -----------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        if self.own_html:
            report.title = f"report.html · flopcheck {self.run_id}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        if self.record is not None:
            prefix.append(evidence.summary_html(self.record))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        # pytest-html's documented way to leave rows out: ten thousand rows of passed or skipped
        # generated checks would make the page too heavy to open. They are counted in the
        # flopcheck section (which says so) and listed in evidence.json; every other row stays.
        generated = report.nodeid.startswith(NODE_PREFIX) and not hasattr(report, "wasxfail")
        if generated and (report.passed or report.skipped):
            cells.clear()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or self.record is None:
            return
        terminalreporter.write_sep("-", "flopcheck")
        for line in evidence.terminal_lines(self.record):
            terminalreporter.write_line(printable(line))
        if self.publish_error:
            terminalreporter.write_line(self.publish_error, red=True, bold=True)
            return
        terminalreporter.write_line(f"evidence: {self.published}")
        html = self.published / "report.html" if self.published is not None else None
        if self.own_html and html is not None and html.exists():
            terminalreporter.write_sep("-", f"Generated html report: {html.as_uri()}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.staged is not None and self.published is None:
            self.staged.discard()  # an aborted or collect-only session leaves nothing behind


def _per_generation(rows: list[StageTotal], runs: dict[str, int] | None, field: str) -> int:
    assert runs is not None
    return sum(runs[row.stage] * getattr(row, field) for row in rows)


def _merge_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per reference: counted in this run if any process counted it, else from the
    cache; entries another worker of this run wrote are that worker's count."""
    rank = {COUNTED: 0, CACHED: 1}
    best: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for run in runs:
        key = (run["model"], run["workload"], run["stage"], run["device"])
        if key not in best or rank.get(run["source"], 2) < rank.get(best[key]["source"], 2):
            best[key] = run
    return [best[key] for key in sorted(best)]


def _html_complete(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64))
        return handle.read().rstrip().endswith(b"</html>")


def _failure_message(comparisons: tuple[Comparison, ...], gaps: tuple[CoverageGap, ...]) -> str:
    parts = [c.describe() for c in comparisons if not c.passed]
    if gaps:
        parts.append(
            "coverage gaps (counted work the analytic model does not account for):\n"
            + "\n".join(f"  - {gap.name}: {gap.detail}" for gap in gaps)
        )
    return "\n\n".join(parts)
