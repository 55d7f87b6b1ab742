"""The live display of a stack operation, fed engine events built with the SDK's own types and
rendered to a recording console."""

from __future__ import annotations

import io
import threading

from pulumi.automation.events import EngineEvent
from rich.console import Console

from fermion.stacks.progress import StackProgress, format_elapsed

from .engine_events import (
    BUCKET,
    CLUSTER,
    DEPLOYMENT,
    PLATFORM,
    SUBNET,
    diagnostic,
    done,
    failed,
    outputs,
    pre,
    step,
    summary,
    urn,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def console(terminal: bool = False) -> Console:
    return Console(
        record=True, width=200, file=io.StringIO(), force_terminal=terminal, color_system=None
    )


def text_of(target: Console, renderable: object | None = None) -> str:
    if renderable is not None:
        target.print(renderable)
    return target.export_text()


def test_elapsed_reads_as_people_say_it() -> None:
    assert [format_elapsed(s) for s in (0, 14.9, 125, 3720)] == ["0s", "14s", "2m 05s", "1h 02m"]


def test_each_finished_step_prints_a_line_with_its_time_and_the_summary_comes_last() -> None:
    clock, out = Clock(), console()
    bucket = step("create", BUCKET, "dev-models")
    with StackProgress("up", "dev", out, clock=clock) as progress:
        progress(pre(bucket))
        clock.now += 14
        progress(outputs(bucket))
        for event in done("same", SUBNET, "dev-private-a"):
            progress(event)
        progress(summary({"create": 1, "same": 3}, duration_s=20))
    lines = text_of(out).splitlines()
    assert lines[0] == "created aws:s3/bucket:Bucket dev-models (14s)"
    # An unchanged resource gets no line of its own; the engine's counts end the output.
    assert lines[-1] == "up dev: done in 20s · 1 created · 3 unchanged"


def test_the_live_footer_shows_counts_steps_in_flight_and_elapsed_time() -> None:
    clock, out = Clock(), console()
    progress = StackProgress("up", "dev", out, clock=clock)
    with progress:
        for event in done("create", BUCKET, "dev-models"):
            progress(event)
        progress(pre(step("create", CLUSTER, "dev-cluster")))
        progress(pre(step("update", DEPLOYMENT, "embed")))
        clock.now += 125
        # The steps in flight are a table: its columns line up, so compare words only.
        rendered = text_of(console(), progress.footer())
        footer = "\n".join(" ".join(line.split()) for line in rendered.splitlines())
    assert "up dev · 2m 05s · 1 created" in footer
    assert "creating aws:eks/cluster:Cluster dev-cluster 2m 05s" in footer
    assert "updating kubernetes:apps/v1:Deployment embed 2m 05s" in footer


def test_the_footer_keeps_to_a_few_steps_in_flight_and_counts_the_rest() -> None:
    progress = StackProgress("up", "dev", console(), max_running=2)
    for i in range(5):
        progress(pre(step("create", SUBNET, f"subnet-{i}")))
    footer = text_of(console(), progress.footer())
    assert "subnet-0" in footer
    assert "subnet-1" in footer
    assert "subnet-2" not in footer
    assert "… and 3 more" in footer


def test_a_preview_words_its_counts_as_plans_and_times_no_step() -> None:
    out = console()
    with StackProgress("preview", "dev", out) as progress:
        for event in done("create", BUCKET, "dev-models", planning=True):
            progress(event)
        for event in done("replace", CLUSTER, "dev-cluster", planning=True):
            progress(event)
        progress(summary({"create": 1, "replace": 1}, duration_s=3))
    text = text_of(out)
    assert "to create aws:s3/bucket:Bucket dev-models\n" in text
    assert "to replace aws:eks/cluster:Cluster dev-cluster\n" in text
    assert "preview dev: done in 3s · 1 to create · 1 to replace" in text


def test_a_replacement_counts_once_though_the_engine_reports_three_steps() -> None:
    progress = StackProgress("up", "dev", console())
    for op in ("create-replacement", "replace", "delete-replaced"):
        for event in done(op, BUCKET, "dev-models"):
            progress(event)
    footer = text_of(console(), progress.footer())
    assert "1 replaced" in footer
    assert "created" not in footer.replace("created replacement", "")


def test_components_count_at_once_and_their_outputs_do_not_count_again() -> None:
    # A component as the engine writes it: no `custom` key, no provider.
    component = {
        "op": "create",
        "urn": urn(PLATFORM, "dev"),
        "type": PLATFORM,
        "provider": "",
        "new": {"type": PLATFORM, "urn": urn(PLATFORM, "dev"), "id": "", "parent": ""},
    }
    progress = StackProgress("up", "dev", console())
    progress(EngineEvent.from_json({"sequence": 1, "resourcePreEvent": {"metadata": component}}))
    footer = text_of(console(), progress.footer())
    assert "1 created" in footer
    assert "creating" not in footer
    progress(EngineEvent.from_json({"sequence": 2, "resOutputsEvent": {"metadata": component}}))
    assert "1 created" in text_of(console(), progress.footer())


def test_failed_steps_and_the_engines_errors_and_warnings_end_the_summary() -> None:
    out = console()
    cluster = step("create", CLUSTER, "dev-cluster")
    with StackProgress("up", "dev", out) as progress:
        progress(pre(cluster))
        progress(diagnostic("info", "a note no one needs"))
        progress(diagnostic("warning", "retrying", urn(CLUSTER, "dev-cluster"), ephemeral=True))
        progress(
            diagnostic(
                "error",
                "creating EKS Cluster (dev-cluster): AccessDeniedException: not authorized\n",
                urn(CLUSTER, "dev-cluster"),
            )
        )
        progress(diagnostic("warning", "aws:s3/bucketV2 is deprecated"))
        progress(failed(cluster))
        footer = text_of(console(), progress.footer())
        assert "1 error, 1 warning, 1 failed (shown at the end)" in footer
        assert progress.errors == [
            "error: dev-cluster: creating EKS Cluster (dev-cluster): AccessDeniedException: "
            "not authorized"
        ]
    text = text_of(out)
    assert "failed create aws:eks/cluster:Cluster dev-cluster\n" in text
    summary_lines = text[text.index("up dev: failed") :].splitlines()
    assert summary_lines[1:] == [
        "  failed create aws:eks/cluster:Cluster dev-cluster",
        "  error: dev-cluster: creating EKS Cluster (dev-cluster): AccessDeniedException: "
        "not authorized",
        "  warning: aws:s3/bucketV2 is deprecated",
    ]
    assert "a note no one needs" not in text
    assert "retrying" not in text


def test_a_possibly_corrupt_state_says_to_refresh() -> None:
    out = console()
    with StackProgress("up", "dev", out) as progress:
        progress(summary({"create": 2}, duration_s=61, maybe_corrupt=True))
    text = text_of(out)
    assert "up dev: done in 1m 01s · 2 created" in text
    assert "may be corrupt: run `fermion refresh dev`" in text


def test_no_changes_say_so() -> None:
    out = console()
    with StackProgress("preview", "dev", out) as progress:
        progress(summary({}, duration_s=2))
    assert "preview dev: done in 2s · no changes" in text_of(out)


def test_on_a_terminal_the_footer_is_live_and_gives_way_to_the_summary() -> None:
    out = console(terminal=True)
    with StackProgress("destroy", "dev", out) as progress:
        for event in done("delete", BUCKET, "dev-models"):
            progress(event)
        progress(summary({"delete": 1}, duration_s=5))
    text = text_of(out)
    assert "deleted aws:s3/bucket:Bucket dev-models" in text
    assert "destroy dev: done in 5s · 1 deleted" in text


def test_events_from_the_engines_threads_are_all_counted() -> None:
    progress = StackProgress("up", "dev", console())

    def feed(worker: int) -> None:
        for i in range(100):
            for event in done("create", SUBNET, f"subnet-{worker}-{i}"):
                progress(event)
            progress.footer()

    threads = [threading.Thread(target=feed, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert "400 created" in text_of(console(), progress.footer())
