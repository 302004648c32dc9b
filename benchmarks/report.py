"""The benchmark's figures as people read them: median and 95th percentile, the issue's targets
beside them, a plain-text table, and the same figures as JSON in `bench-results.json`.

A page figure is `{"median": ms, "p95": ms, "samples": n, ...}`; a rate or a size is
`{"value": x, ...}`; a figure that could not be measured is `{"error": "why"}`.
"""

import json
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PAGE_TARGET_MS = 50
DEEP_PAGE_SPEEDUP = 10
EXPORT_GROWTH_MB = 50
APPENDS_PER_S = 2_000
VERIFIED_PER_S = 150_000
E2E_PER_S = 100
PAGE_SQL_RATIO = 3
NOTIFICATION_EMAILS_PER_1000 = 20

PORTAL_PAGES = ("audit_first_page_ms", "audit_deep_page_ms", "queue_page_ms", "request_detail_ms")
ADMIN_PAGES = ("admin_audit_first_page_ms", "admin_audit_deep_page_ms", "admin_queue_page_ms")
# The order of the table and of the issue.
FIGURES = (
    "audit_first_page_ms",
    "audit_deep_page_ms",
    "admin_audit_first_page_ms",
    "admin_audit_deep_page_ms",
    "queue_page_ms",
    "admin_queue_page_ms",
    "request_detail_ms",
    "queries_per_page",
    "page_sql_ratio",
    "export_100k_rows_s",
    "export_peak_rss_mb",
    "audit_appends_per_s",
    "verify_events_per_s",
    "e2e_requests_per_s",
    "e2e_sql_per_request",
    "e2e_transactions_per_request",
    "e2e_tasks_per_request",
    "e2e_cpu_ms_per_request",
    "api_requests_per_s",
    "api_e2e_requests_per_s",
    "notification_emails_per_1000_auto_approvals",
    "http_queue_rps",
)
# Per auto-approved request: the unit each is shown in.
PER_REQUEST = {
    "e2e_sql_per_request": "",
    "e2e_transactions_per_request": "",
    "e2e_tasks_per_request": "",
    "e2e_cpu_ms_per_request": " ms",
}
HEADERS = ("figure", "median / value", "p95", "target", "met?")


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("A median needs at least one value.")
    return statistics.median(values)


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank: the smallest value at or above 95 % of them."""
    if not values:
        raise ValueError("A percentile needs at least one value.")
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def timings(samples_ms: Sequence[float], **details) -> dict:
    """A page figure: the median and p95 of its response times in milliseconds."""
    return {
        "median": round(median(samples_ms), 2),
        "p95": round(p95(samples_ms), 2),
        "samples": len(samples_ms),
        **details,
    }


@dataclass(frozen=True)
class Check:
    """A figure's target in words, and whether the figure meets it (None: no target)."""

    target: str
    met: bool | None


def check(name: str, results: dict) -> Check:
    figure = results.get(name) or {"error": "not measured"}
    failed = "error" in figure
    if name in PORTAL_PAGES:
        met = not failed and figure["median"] < PAGE_TARGET_MS
        if name == "audit_deep_page_ms":
            admin = results.get("admin_audit_deep_page_ms") or {}
            speedup = admin["median"] / figure["median"] if not failed and "median" in admin else 0
            return Check(
                f"< {PAGE_TARGET_MS} ms median; >= {DEEP_PAGE_SPEEDUP}x faster than the admin's "
                f"({speedup:,.1f}x)",
                met and speedup >= DEEP_PAGE_SPEEDUP,
            )
        return Check(f"< {PAGE_TARGET_MS} ms median", met)
    if name == "queries_per_page":
        return Check(
            "equal at 10 rows and at scale",
            not failed
            and all(page["at_10"] == page["at_scale"] for page in figure["pages"].values()),
        )
    if name == "page_sql_ratio":
        return Check(
            f"<= {PAGE_SQL_RATIO}x its SQL",
            not failed
            and all(
                _ratio_met(ratio)
                for page, ratio in figure["pages"].items()
                if not page.startswith("admin_")
            ),
        )
    minimums = {
        "audit_appends_per_s": APPENDS_PER_S,
        "verify_events_per_s": VERIFIED_PER_S,
        "e2e_requests_per_s": E2E_PER_S,
        "api_e2e_requests_per_s": E2E_PER_S,
    }
    if name in minimums:
        met = not failed and figure["value"] >= minimums[name]
        if name == "audit_appends_per_s":
            met = met and figure["chains_intact"]
        if name in {"e2e_requests_per_s", "api_e2e_requests_per_s"}:
            # Every request successful, and the organization's chain intact afterwards.
            met = met and figure["successful"] == figure["requests"]
            met = met and figure.get("chain_intact", True)
        if name == "api_e2e_requests_per_s":
            return Check(f">= {minimums[name]:,}/s, every request successful", met)
        return Check(f">= {minimums[name]:,}/s", met)
    if name == "notification_emails_per_1000_auto_approvals":
        return Check(
            f"<= {NOTIFICATION_EMAILS_PER_1000} with the default interval",
            not failed and figure["value"] <= NOTIFICATION_EMAILS_PER_1000,
        )
    if name == "export_peak_rss_mb":
        return Check(
            f"< {EXPORT_GROWTH_MB} MB growth", not failed and figure["value"] < EXPORT_GROWTH_MB
        )
    return Check("for comparison" if name in ADMIN_PAGES else "-", None if not failed else False)


def _ratio_met(page: dict) -> bool:
    return "error" not in page and page["value"] is not None and page["value"] <= PAGE_SQL_RATIO


def _ratio_shown(page: dict) -> str:
    if "error" in page or page["value"] is None:
        return "error"
    return f"{page['value']:g}x ({page['page_ms']:,.1f} / {page['sql_ms']:,.1f} ms)"


def _number(value: float, unit: str) -> str:
    if unit in {"/s", " req/s"}:
        return f"{value:,.0f}{unit}"
    return f"{value:,.1f} {unit}"


def _shown(name: str, figure: dict) -> tuple[str, str]:
    """The median (or the value) and the p95 column of one figure."""
    if "error" in figure:
        return "error", ""
    if name.endswith("_ms"):
        return _number(figure["median"], "ms"), _number(figure["p95"], "ms")
    if name == "export_100k_rows_s":
        return f"{_number(figure['value'], 's')} ({figure['rows']:,} rows)", ""
    if name == "export_peak_rss_mb":
        return _number(figure["value"], "MB"), ""
    if name == "http_queue_rps":
        return _number(figure["value"], " req/s"), _number(figure["p95_ms"], "ms")
    if name == "notification_emails_per_1000_auto_approvals":
        return f"{figure['value']:g} e-mails", ""
    if name in PER_REQUEST:
        unit = PER_REQUEST[name]
        return (
            f"{figure['value']:g}{unit} (web {figure['web']:g}, worker {figure['worker']:g})"
            if "web" in figure
            else f"{figure['value']:g}{unit} ({figure['from_web']:g} from web, "
            f"{figure['from_worker']:g} from worker)",
            "",
        )
    return _number(figure["value"], "/s"), ""


def _met(check: Check) -> str:
    return {True: "yes", False: "NO", None: ""}[check.met]


def rows(results: dict) -> list[list[str]]:
    """The table's rows: one per figure, one per page for the query counts."""
    found = []
    for name in FIGURES:
        figure = results.get(name) or {"error": "not measured"}
        verdict = check(name, results)
        if name == "queries_per_page" and "error" not in figure:
            for page, counts in figure["pages"].items():
                found.append(
                    [
                        f"queries_per_page {page}",
                        f"{counts['at_10']} at 10, {counts['at_scale']} at scale",
                        "",
                        verdict.target,
                        "yes" if counts["at_10"] == counts["at_scale"] else "NO",
                    ]
                )
            continue
        if name == "page_sql_ratio" and "error" not in figure:
            for page, ratio in figure["pages"].items():
                found.append(
                    [
                        f"page_sql_ratio {page}",
                        _ratio_shown(ratio),
                        "",
                        *(
                            ("for comparison", "")
                            if page.startswith("admin_")
                            else (verdict.target, "yes" if _ratio_met(ratio) else "NO")
                        ),
                    ]
                )
            continue
        found.append([name, *_shown(name, figure), verdict.target, _met(verdict)])
    return found


def table(headers: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A plain-text table, columns padded to their widest cell, numbers right-aligned."""
    widths = [
        max(len(str(row[column])) for row in [headers, *body]) for column in range(len(headers))
    ]

    def line(cells, numeric=False):
        padded = []
        for column, cell in enumerate(cells):
            text = str(cell)
            right = numeric and 0 < column < 3 and text[:1].isdigit()
            padded.append(text.rjust(widths[column]) if right else text.ljust(widths[column]))
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row, numeric=True) for row in body)])


def checks(results: dict) -> dict[str, dict]:
    """Each figure's target and verdict, for the JSON file."""
    return {
        name: {"target": verdict.target, "met": verdict.met}
        for name in FIGURES
        for verdict in [check(name, results)]
    }


def write_json(path: Path, results: dict) -> None:
    """Write `results` to `path` whole or not at all (a reader never sees half a file)."""
    path = Path(path)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    ) as handle:
        json.dump(results, handle, indent=2, ensure_ascii=False)
        handle.write("\n")
    os.replace(handle.name, path)


def _proc_field(path: str, name: str) -> str:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return ""
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(name)), "")


def machine(postgresql: str, load: float) -> dict:
    """The machine the figures were measured on, and when; `load`: its load average before."""
    memory_kb = _proc_field("/proc/meminfo", "MemTotal").split()
    return {
        "cores": os.cpu_count(),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "memory_gib": round(int(memory_kb[0]) / 1024**2, 1) if memory_kb else None,
        "postgresql": postgresql,
        "python": platform.python_version(),
        "system": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other work on the machine while the benchmark ran lowers every figure.
        "load_average_at_start": round(load, 2),
    }
