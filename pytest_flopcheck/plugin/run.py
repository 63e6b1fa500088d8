"""Everything one pytest process knows about its flopcheck run, registered as a plugin: the
reference cache, the generated items, the outcomes (on the controller), xdist's workers and the
evidence published once, whole, at the end."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest

from pytest_flopcheck import output
from pytest_flopcheck.evidence import render
from pytest_flopcheck.evidence.record import NOTHING_VERIFIED, RunRecord
from pytest_flopcheck.plugin.items import NODE_PREFIX, FlopcheckCollector, FlopcheckItem, failure_message
from pytest_flopcheck.plugin.outcomes import CAUSE, RESULT, OutcomeRecorder
from pytest_flopcheck.plugin.publishing import build_record, publish
from pytest_flopcheck.reference.store import ReferenceStore
from pytest_flopcheck.text import printable
from pytest_flopcheck.verification.cases import Case
from pytest_flopcheck.verification.dependencies import CheckError, CheckSkipped
from pytest_flopcheck.verification.session import FlopcheckSession

_SOURCES_KEY = "flopcheck_reference_runs"
_WARNINGS_KEY = "flopcheck_warnings"
_RUN_ID_KEY = "flopcheck_run_id"
_STORE_KEY = "flopcheck_store"


class FlopcheckRun:
    """The flopcheck run as this process (the controller, a worker, or both when serial) sees it."""

    def __init__(
        self,
        config: pytest.Config,
        session: FlopcheckSession,
        strict: bool,
        output_root: Path,
        output_text: str,
    ) -> None:
        self.config = config
        self.session = session
        self.started = time.time()
        self.strict = strict
        self.is_worker = hasattr(config, "workerinput")
        self.selected: list[str] | None = None
        self.cases: dict[str, Case] = {}
        """The case of each generated check's node id: from the items collected here, or parsed
        once from the ids xdist's workers collected."""
        self.outcomes = OutcomeRecorder(config, self.case_of)
        self.worker_sources: list[dict[str, Any]] = []
        self.worker_warnings: list[str] = []
        self.record: RunRecord | None = None
        self.staged: output.StagedRun | None = None
        self.published: Path | None = None
        self.publish_error: str | None = None
        self.own_html = False
        self._phase_hooks: tuple[Any, Any, Any] | None = None
        """pytest's setup, call and teardown hooks without the log capture's (set at session start)."""
        if self.is_worker:
            workerinput = config.workerinput  # type: ignore[attr-defined]
            self.run_id = str(workerinput[_RUN_ID_KEY])
            self.shared_store: str | None = workerinput.get(_STORE_KEY)
            return
        self.run_id = output.new_run_id()
        self.shared_store = None
        if config.option.collectonly:
            return  # nothing runs, so nothing is published
        explicit = config.getoption("flopcheck_output") is not None
        label = "--flopcheck-output" if explicit else "ini key flopcheck_output"
        self.staged = output.StagedRun(output_root, self.run_id, label, output_text)
        # Without pytest's cache, a run-private directory still lets xdist workers share counts;
        # it is known before any worker is configured, and removed before publishing.
        self.shared_store = str(self.staged.staging / ".references")
        if config.pluginmanager.hasplugin("html") and not config.getoption("htmlpath", None):
            # pytest-html configures after us (we run tryfirst) and writes at session end, into
            # the staging directory; the file is checked and published with the rest.
            config.option.htmlpath = str(self.staged.staging / "flopcheck" / "report.html")
            config.option.self_contained_html = True
            self.own_html = True

    def case_of(self, nodeid: str) -> Case | None:
        if nodeid not in self.cases and nodeid.startswith(NODE_PREFIX):
            case = Case.parse(nodeid[len(NODE_PREFIX) :])
            if case is not None:
                self.cases[nodeid] = case
        return self.cases.get(nodeid)

    # -- the reference store ------------------------------------------------------------------

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        manager = self.config.pluginmanager
        logging = manager.get_plugin("logging-plugin")
        if logging is not None:
            setup, call, teardown = (
                manager.subset_hook_caller(f"pytest_runtest_{when}", [logging])
                for when in ("setup", "call", "teardown")
            )
            self._phase_hooks = (setup, call, teardown)
        options = self.config.option
        recount = bool(options.flopcheck_recount or getattr(options, "cacheclear", False))
        cache = getattr(self.config, "cache", None)
        cached: Path | None = None
        problems: list[str] = []
        if cache is not None:
            try:
                cached = Path(cache.mkdir("flopcheck-references"))
            except OSError as exc:  # a file in its place, a read-only project
                where = f" {exc.filename}" if exc.filename else ""
                problems.append(
                    f"pytest's cache directory cannot hold the reference cache{where} ({exc.strerror or exc})"
                )
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
        self.session.dependencies.store = store

    # -- collection ---------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, items: list[pytest.Item]) -> None:
        collector = FlopcheckCollector.from_parent(
            session, name="flopcheck", path=self.config.rootpath, nodeid="flopcheck", run=self
        )
        generated = collector.collect()
        self.cases.update((item.nodeid, item.case) for item in generated if isinstance(item, FlopcheckItem))
        items.extend(generated)
        # Reported like any collector's result, so that the terminal's "collected N items" (and
        # "--collect-only -q"'s summary) count the generated checks too.
        session.ihook.pytest_collectreport(
            report=pytest.CollectReport("flopcheck", "passed", None, list(generated))
        )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.is_worker:
            self.selected = [item.nodeid for item in session.items if isinstance(item, FlopcheckItem)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.selected is None:
            self.selected = [nodeid for nodeid in ids if self.case_of(nodeid) is not None]

    # -- running ------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        """A generated check runs pytest's run-test protocol with every plugin's setup, call and
        teardown hooks (marks such as xfail, the user's own hooks) but the log capture's: its
        wrappers cost more than most checks, which log nothing. The user's own tests keep it."""
        if not isinstance(item, FlopcheckItem) or self._phase_hooks is None:
            return None
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        reraise: tuple[type[BaseException], ...] = (pytest.exit.Exception,)
        if not item.config.getoption("usepdb", False):
            reraise += (KeyboardInterrupt,)
        setup, call, teardown = self._phase_hooks
        if self._phase(item, ihook, "setup", lambda: setup(item=item), reraise):
            self._phase(item, ihook, "call", lambda: call(item=item), reraise)
        self._phase(item, ihook, "teardown", lambda: teardown(item=item, nextitem=nextitem), reraise)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    @staticmethod
    def _phase(
        item: pytest.Item, ihook: Any, when: Literal["setup", "call", "teardown"], run: Callable[[], object],
        reraise: tuple[type[BaseException], ...],
    ) -> bool:  # fmt: skip
        """One phase as pytest's runner makes it: called, made into a report, logged (``ihook``:
        the item's hook proxy, looked up once per check rather than at every hook call)."""
        call = pytest.CallInfo.from_call(run, when=when, reraise=reraise)
        report: pytest.TestReport = ihook.pytest_runtest_makereport(item=item, call=call)
        ihook.pytest_runtest_logreport(report=report)
        if call.excinfo is not None and report.failed:
            ihook.pytest_exception_interact(node=item, call=call, report=report)
        return report.passed

    def prepare(self, item: FlopcheckItem) -> None:
        try:
            self.session.prepare(item.case)
        except CheckSkipped as skipped:
            if self.strict:
                pytest.fail(f"reference could not run (--flopcheck-strict): {skipped.reason}", pytrace=False)
            pytest.skip(skipped.reason)
        except CheckError as error:
            cause = error.cause
            item.user_properties.append((CAUSE, json.dumps(attrs.asdict(cause))))
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
        item.user_properties.append((RESULT, json.dumps(payload)))
        if not outcome.passed:
            pytest.fail(failure_message(outcome.comparisons, outcome.gaps, outcome.detail), pytrace=False)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # Detail only for checks that did not pass: a passed check's numbers are in evidence.json,
        # and 10,000 embedded tables would make the page too heavy to open.
        if isinstance(item, FlopcheckItem) and call.when == "call" and report.failed:
            payload = dict(item.user_properties).get(RESULT)
            if payload and self.config.pluginmanager.hasplugin("html"):
                from pytest_html import extras

                comparisons = json.loads(str(payload))["comparisons"]
                report.extras = [  # type: ignore[attr-defined]
                    *getattr(report, "extras", []),
                    extras.html(render.comparison_html(comparisons)),
                ]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.is_worker and report.nodeid.startswith(NODE_PREFIX):
            self.outcomes.on_report(report)

    # -- xdist ----------------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_RUN_ID_KEY] = self.run_id
        if self.shared_store:
            node.workerinput[_STORE_KEY] = self.shared_store

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        sent = getattr(node, "workeroutput", {})
        if sent.get(_SOURCES_KEY):
            self.worker_sources.extend(json.loads(sent[_SOURCES_KEY]))
        if sent.get(_WARNINGS_KEY):
            self.worker_warnings.extend(json.loads(sent[_WARNINGS_KEY]))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "load":
            return None  # the user chose a scheduling: keep it
        from pytest_flopcheck.plugin.scheduling import make_scheduler

        return make_scheduler(config, log, self.case_of)

    # -- evidence -------------------------------------------------------------------------------

    def _warnings(self) -> list[str]:
        """This process's warnings about the run: counts that could not be cached or read back."""
        dependencies = self.session.dependencies
        return [*dependencies.store.problems, *dependencies.notes]

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        dependencies = self.session.dependencies
        if self.is_worker:
            sources = [s.as_dict() for s in dependencies.count_sources]
            self.config.workeroutput[_SOURCES_KEY] = json.dumps(sources)  # type: ignore[attr-defined]
            self.config.workeroutput[_WARNINGS_KEY] = json.dumps(self._warnings())  # type: ignore[attr-defined]
            return (yield)
        if self.staged is None:
            return (yield)
        self.record = build_record(
            run_id=self.run_id,
            started=self.started,
            config=self.config,
            session=self.session,
            selected=self.selected or [],
            checks=self.outcomes.checks,
            causes=self.outcomes.causes,
            count_sources=[s.as_dict() for s in dependencies.count_sources] + self.worker_sources,
            warnings=[*self._warnings(), *self.worker_warnings],
            interrupted=session.exitstatus == pytest.ExitCode.INTERRUPTED,
        )
        if self.record.verdict == NOTHING_VERIFIED and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        html_error: BaseException | None = None
        try:
            yield  # pytest-html renders the report (with our summary section) into the staging dir
        except (OSError, KeyboardInterrupt) as exc:
            html_error = exc
        self.published, self.publish_error, status = publish(
            self.staged, self.record, self.config, self.own_html, html_error
        )
        if status is not None:
            session.exitstatus = status
        if self.own_html:
            self._silence_html_link()
        return None

    def _silence_html_link(self) -> None:
        """pytest-html would print a link to the staging path; our terminal summary prints the
        published one instead."""
        from pytest_html.basereport import BaseReport

        for plugin in self.config.pluginmanager.get_plugins():
            if isinstance(plugin, BaseReport):
                self.config.pluginmanager.unregister(plugin)

    # -- presentation -----------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        if self.own_html:
            report.title = f"report.html · flopcheck {self.run_id}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str], postfix: list[str]) -> None:
        if self.record is not None:
            prefix.append(render.summary_html(self.record))

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
        for line in render.terminal_lines(self.record):
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


def output_root(config: pytest.Config, raw: str) -> Path:
    """Where the evidence goes: ``--flopcheck-output`` relative to the invocation directory, the
    ini key relative to the rootdir."""
    root = Path(os.path.expanduser(raw))
    if root.is_absolute():
        return root
    return (
        config.invocation_params.dir if config.getoption("flopcheck_output") is not None else config.rootpath
    ) / root
