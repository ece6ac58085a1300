"""`projctl metrics` as terminal text: the daemon, its requests, its upstreams and its sync."""

from __future__ import annotations

import sys
import time

from projctl_client.render import Style, age, span

_MIB = 1 << 20


def metrics(report: dict, stream: object = None) -> str:
    style = Style(stream or sys.stdout)
    now = time.time()
    daemon = report["daemon"]
    threshold = daemon["slow_request_threshold_s"]
    lines = [
        f"{style.bold}projctld {daemon['version']}{style.reset} (pid {daemon['pid']}), "
        f"up {span(daemon['uptime_s'])}",
        f"  memory    {daemon['rss_bytes'] / _MIB:.1f} MiB resident, "
        f"peak {daemon['peak_rss_bytes'] / _MIB:.1f} MiB",
        f"  clients   {daemon['open_connections']} connected",
        f"  slow      {daemon['slow_requests']} requests over {_ms(threshold)} "
        + style.paint("dim", "(each one is in the log as slow_request)"),
        "",
    ]
    lines += _requests(report["requests"], style)
    lines.append("")
    lines += _upstreams(report["upstreams"], style, now)
    lines.append("")
    lines += _sync(report["sync"], style, now)
    return "\n".join(lines)


def _requests(requests: list[dict], style: Style) -> list[str]:
    if not requests:
        return [f"{style.bold}Requests{style.reset}  none yet"]
    rows = [("request", "command", "count", "errors", "p50", "p90", "p99", "max")]
    for metric in requests:
        latency = metric["latency"]
        rows.append((metric["rpc"], metric["command"] or "-", str(metric["count"]),
                     str(metric["errors"]), _ms(latency["p50_s"]), _ms(latency["p90_s"]),
                     _ms(latency["p99_s"]), _ms(latency["max_s"])))
    return [f"{style.bold}Requests{style.reset} "
            + style.paint("dim", "(since start, by type and the projctl command that sent it; "
                                 "quantiles read off a histogram)"),
            *_table(rows, numeric_from=2)]


def _upstreams(upstreams: list[dict], style: Style, now: float) -> list[str]:
    if not upstreams:
        return [f"{style.bold}Upstreams{style.reset}  none configured"]
    lines = [f"{style.bold}Upstreams{style.reset}"]
    for metric in upstreams:
        last = metric.get("last_success")
        lines.append(f"  {metric['upstream']} ({metric['host']}): {metric['requests']} requests, "
                     f"{metric['conditional_hits']} answered 304, {metric['retries']} retried, "
                     f"{metric['errors']} failed; last success "
                     f"{age(now - last) if last else 'never'}")
        if metric.get("last_error"):
            lines.append(style.paint("red", f"    last error {metric['last_error']} "
                                            f"{age(now - metric['last_error_at'])}"))
        hold = metric.get("hold_until")
        if hold and hold > now:
            lines.append(style.paint("yellow", f"    holding requests for {span(hold - now)} "
                                               "more, as the upstream asked (Retry-After)"))
        for budget in metric.get("rate_limits", []):
            left = "?" if budget.get("remaining") is None else budget["remaining"]
            size = "?" if budget.get("limit") is None else budget["limit"]
            reset = budget.get("reset_at")
            resets = f", resets in {span(max(0.0, reset - now))}" if reset else ""
            lines.append(f"    rate limit {budget['resource']}: {left} of {size} left{resets}")
    return lines


def _sync(sync: dict, style: Style, now: float) -> list[str]:
    waiting = f"{sync['waiting']} waiting to be sent"
    if sync.get("hub") is None:
        return [f"{style.bold}Sync{style.reset}  no hub configured; {waiting}"]
    last = sync.get("last_success")
    line = (f"{style.bold}Sync{style.reset}  {sync['hub']}: {sync['pushed']} pushed, "
            f"{sync['pulled']} pulled, {waiting}; last success "
            f"{age(now - last) if last else 'never'}")
    lines = [line]
    if sync["failures"]:
        error = sync.get("error") or {}
        lines.append(style.paint("red", f"  {sync['failures']} failed in a row: "
                                        f"{error.get('message', 'see projctl sync')}"))
    return lines


def _table(rows: list[tuple[str, ...]], numeric_from: int) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.rjust(width) if i >= numeric_from else cell.ljust(width)
                             for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
            .rstrip() for row in rows]


def _ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.01:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.2f} ms"
