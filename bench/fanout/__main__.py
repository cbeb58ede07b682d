"""Fan-out benchmark: `.venv/bin/python -m bench.fanout [options]`.

Runs each part in a process of its own (bench/fanout/part.py), prints the results
table and writes it as the "## Fan-out" section of bench/RESULTS.md. See
bench/fanout/README.md for what is measured and how."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.machine import describe

from .config import write_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

TARGET_RATE = 2000.0
TARGET_RATIO = 50.0
TARGET_RATE_ERROR = 0.05
TARGET_P50 = 0.200
TARGET_P99 = 1.0
TARGET_RSS_MB = 150.0


def run_part(name: str, extra: list[str], tmp: Path) -> dict[str, Any]:
    out = tmp / f"{name}.json"
    cmd = [sys.executable, "-m", "bench.fanout.part", name, "--json", str(out), *extra]
    print(f"-- {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    print(f"   done in {time.perf_counter() - started:.0f} s", flush=True)
    return dict(json.loads(out.read_text("utf-8")))


def mb(kb: float) -> float:
    return kb / 1024


def yes(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(results: dict[str, Any], args: argparse.Namespace, seconds: float) -> str:
    svc = results.get("service")
    inproc = results.get("inproc")
    lat = results.get("latency")
    lines: list[str] = []
    add = lines.append
    add("## Fan-out")
    add("")
    machine = results.get("machine")
    add(f"`.venv/bin/python -m bench.fanout` ({date.today().isoformat()}, {seconds:.0f} s; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        + (f"; machine speed (bench/machine.py): {machine}" if machine else "")
        + "); what is measured and how: bench/fanout/README.md.")
    add("")
    add("The real path: `POST /api/incidents` (broadband-outage, ningbo) or complaints over HTTP, the service's "
        "own outbox worker, the SQLite store, the real twilio client against the sandbox over loopback HTTP, "
        "aiosmtplib against the aiosmtpd inbox. The sandbox and inbox run in a separate process (one core each "
        "for service and providers) unless marked in-process. Status callbacks stay on: every SMS gets three "
        "signed callbacks (sending, sent, delivered; 50 ms steps, receipt after 200 ms) back to the service. "
        "\"Accepted\" = the channel's send returned (Twilio answered 201 / SMTP took the DATA), stamped by a "
        "thin wrapper around the service's own channels.")
    add("")
    add("### Targets")
    add("")
    add("| # | target | measured | verdict |")
    add("| --- | --- | --- | --- |")
    if svc:
        f = svc["fanout"]
        net = svc.get("fanout_net")
        if net:
            ratio = net["rate_from_trigger"] / net["naive"]["rate"]
            ok = net["rate_from_trigger"] >= TARGET_RATE and ratio >= TARGET_RATIO
            add(f"| 1 | {net['recipients']:,} x 2 (SMS + email), no rate limit, every Twilio answer "
                f"{net['api_latency'] * 1000:.0f} ms late as over a real network: >= {TARGET_RATE:,.0f} messages/s "
                f"handed to providers and >= {TARGET_RATIO:.0f}x a naive sequential `create_async` loop, in the same "
                f"run | {net['rate_from_trigger']:,.0f} msg/s from the trigger to the last acceptance "
                f"({net['accepted']:,} in {net['last_accept_s']:.1f} s, {net['sms_rate_from_trigger']:,.0f} SMS/s; "
                f"`sms_concurrency` {net['sms_concurrency']}); naive {net['naive']['rate']:.1f} msg/s "
                f"({net['naive']['messages']} SMS): {ratio:,.0f}x | {yes(ok)} |")
        add(f"| 1 | (same on loopback, the sandbox answering in ~1 ms: the service's own capacity) "
            f"| {f['rate_from_trigger']:,.0f} msg/s ({f['accepted']:,} in {f['last_accept_s']:.1f} s; "
            f"{f['rate_first_to_last']:,.0f} msg/s first to last) | {yes(f['rate_from_trigger'] >= TARGET_RATE)} |")
        naive = f.get("naive")
        if naive:
            ratio = f["rate_from_trigger"] / naive["rate"]
            add(f"| 1 | (the naive loop on loopback: it costs ~1 ms of CPU per call there, so the ratio measures "
                f"CPU per message, not concurrency) | naive {naive['rate']:,.0f} msg/s ({naive['messages']} SMS); "
                f"fan-out / naive = {ratio:.2f}x | - |")
        for w in svc["windows"]:
            if w["sms_rate"]:
                asked = w["sms_rate"] in args.rates_asked
                add(f"| 2 | `sms_rate` {w['sms_rate']:,.0f} segments/s: achieved within 5% "
                    f"({w['window']:.0f} s window{'' if asked else ', an extra lower rate'}) "
                    f"| {w['segments_per_s']:,.0f} segments/s ({w['error'] * 100:+.1f}%) "
                    f"| {yes(abs(w['error']) <= TARGET_RATE_ERROR)} |")
    if lat:
        l = lat["latency"]
        v1, any_ = l["v1"], l["any"]
        add(f"| 3 | crossing complaint -> first SMS accepted: p50 <= 200 ms, p99 <= 1 s "
            f"| script v1: p50 {ms(v1['p50'])}, p99 {ms(v1['p99'])} (n={v1['n']}); any SMS (role notice): "
            f"p50 {ms(any_['p50'])}, p99 {ms(any_['p99'])} "
            f"| {yes(v1['p50'] <= TARGET_P50 and v1['p99'] <= TARGET_P99)} |")
    if svc and svc.get("latency_10k"):
        l = svc["latency_10k"]
        v1, any_ = l["v1"], l["any"]
        add(f"| 3 | (same, {svc['fanout']['recipients']:,}-person audience in ningbo) | script v1: p50 {ms(v1['p50'])}, max {ms(v1['max'])} "
            f"(n={v1['n']}); any SMS p50 {ms(any_['p50'])}, max {ms(any_['max'])} "
            f"| {yes(v1['p50'] <= TARGET_P50 and (v1['max'] or 0) <= TARGET_P99)} |")
    if svc:
        f = svc["fanout"]
        peak = mb(fanout_peak(f))
        add(f"| 4 | service RSS <= {TARGET_RSS_MB:.0f} MB during the {f['recipients']:,} x 2 fan-out (providers in "
            f"their own process) | peak {peak:.0f} MB during the fan-out; {mb(f['rss_before_kb']):.0f} MB just before "
            f"it (the {svc['people']:,}-person catalog loaded; VmHWM {mb(f['hwm_before_kb']):.0f} MB while loading it) "
            f"| {yes(peak <= TARGET_RSS_MB)} |")
    if inproc:
        f = inproc["fanout"]
        peak = mb(fanout_peak(f))
        add(f"| 4 | (same, sandbox and inbox in the service's process and event loop) | peak {peak:.0f} MB; "
            f"{f['rate_from_trigger']:,.0f} msg/s | {yes(peak <= TARGET_RSS_MB)} |")
    add("")
    if svc:
        f = svc["fanout"]
        add(f"### The {f['recipients']:,} x 2 fan-out")
        add("")
        columns = [("loopback, providers in their own process", f)]
        if svc.get("fanout_net"):
            net = svc["fanout_net"]
            columns.append((f"every Twilio answer {net['api_latency'] * 1000:.0f} ms late, `sms_concurrency` "
                            f"{net['sms_concurrency']}", net))
        if inproc:
            columns.append(("loopback, providers in-process", inproc["fanout"]))
        add("| | " + " | ".join(label for label, _ in columns) + " |")
        add("| --- |" + " --- |" * len(columns))
        rows: list[tuple[str, Any]] = [
            (f"recipients ({svc['people_generated']:,} generated + the sample staff in ningbo)", lambda f: f"{f['recipients']:,}"),
            ("deliveries (script v1 + 4 role notices)", lambda f: f"{f['deliveries']:,}"),
            ("accepted SMS / email", lambda f: f"{f['accepted_sms']:,} / {f['accepted_email']:,}"),
            ("`POST /api/incidents` answered (every delivery created)", lambda f: f"{f['trigger_answer_s']:.1f} s"),
            ("first acceptance / first script SMS", lambda f: f"{ms(f['first_accept_s'])} / {ms(f['first_v1_sms_s'])}"),
            ("last acceptance", lambda f: f"{f['last_accept_s']:.1f} s"),
            ("all status callbacks landed", lambda f: f"{f['callbacks_settled_s']:.1f} s"),
            ("messages/s, trigger to last acceptance", lambda f: f"{f['rate_from_trigger']:,.0f}"),
            ("messages/s, first to last acceptance", lambda f: f"{f['rate_first_to_last']:,.0f}"),
            ("SMS/s, trigger to last acceptance", lambda f: f"{f['sms_rate_from_trigger']:,.0f}"),
            ("accepted per second (min / median / max of whole seconds)", lambda f: _spread(f["per_second"])),
            ("SMS delivered per store (callbacks applied)", lambda f: f"{f['sms_delivered']:,}"),
            ("status callbacks (answers)", lambda f: f"{f['provider_stats']['callbacks']:,} "
                                                     f"({_answers(f['provider_stats']['callback_answers'])})"),
            ("service CPU during the fan-out", lambda f: f"{f['service_cpu_s']:.1f} s "
                                                         f"({f['service_cpu_s'] / f['accepted'] * 1000:.2f} ms/message)"),
            ("provider process CPU (whole run)", lambda f: f"{f['provider_stats']['cpu_s']:.1f} s"
                                                           if f["providers"] != "in-process" else "in the service's"),
            ("service RSS before / peak during the fan-out (VmRSS every 100 ms, VmHWM reset before)",
             lambda f: f"{mb(f['rss_before_kb']):.0f} / {mb(fanout_peak(f)):.0f} MB"),
            ("service VmHWM before the fan-out (catalog loading)", lambda f: f"{mb(f['hwm_before_kb']):.0f} MB"),
            ("provider process VmHWM", lambda f: f"{mb(f['provider_stats']['hwm_kb']):.0f} MB"
                                                 if f["providers"] != "in-process" else "-"),
        ]
        for label, cell in rows:
            add(f"| {label} | " + " | ".join(cell(c) for _, c in columns) + " |")
        add("")
        add(f"`load_catalog` of the config with {svc['people']:,} people took {svc['load_catalog_s']:.1f} s "
            "(before any measurement).")
        add("")
        add(f"### SMS rate limit (`Settings.sms_rate`), production mix (SMS and email to the same {f['recipients']:,} people)")
        add("")
        add("| limit (segments/s) | achieved segments/s | error | SMS/s | emails/s | whole seconds min / max |")
        add("| --- | --- | --- | --- | --- | --- |")
        for w in svc["windows"]:
            if not w["sms_rate"]:
                continue
            secs = w["per_second_segments"]
            add(f"| {w['sms_rate']:,.0f} | {w['segments_per_s']:,.1f} | {w['error'] * 100:+.1f}% | "
                f"{w['sms_per_s']:,.1f} | {w['emails'] / w['window']:,.1f} | {min(secs)} / {max(secs)} |")
        unlimited = f["sms_rate_from_trigger"] * (f["naive"]["segments"] if f.get("naive") else 3)
        add("")
        add(f"Each SMS is {', '.join(str(s) for s in svc['windows'][0]['segments_per_sms'])} UCS-2 segments. "
            f"Without a limit the same mix moved {unlimited:,.0f} SMS segments/s (target 1 above), so a limit above that "
            "cannot be reached whatever the limiter does. Window: "
            f"{svc['windows'][0]['warmup']:.0f} s after the first SMS, for {svc['windows'][0]['window']:.0f} s; the "
            "fan-out is then dropped with its store.")
        add("")
    if svc:
        f = svc["fanout"]
        per_msg = f["service_cpu_s"] / f["accepted"] * 1000
        add("### Reading the numbers")
        add("")
        wall = f["last_accept_s"]
        prov = f["provider_stats"]["cpu_s"]
        loop = svc.get("loop", "asyncio")
        answers = f["provider_stats"].get("callback_answers", {})
        add(f"- CPU: the service (on {loop}, as `coordinator serve` runs when uvloop is installed; the provider "
            f"process on the same loop) used {f['service_cpu_s']:.1f} s for {f['accepted']:,} messages "
            f"({per_msg:.2f} ms each, the three status callbacks per SMS included: "
            f"{sum(answers.values()):,} callbacks, {answers.get('204', 0):,} answered 204) over {wall:.1f} s of "
            f"wall time, i.e. at most ~{1000 / per_msg:,.0f} messages/s on its one core; {TARGET_RATE:,.0f}/s needs "
            f"<= {1000 / TARGET_RATE:.2f} ms per message. The provider process (sandbox + inbox, the other core) "
            f"used {prov:.1f} s over the whole run, which includes its start and the naive loop; it needs the "
            "same 0.5 ms per message for the other end of each request, SMTP session and callback. The machine "
            "is shared (two cores; with another process busy on one of them the same fan-out measured ~1,750 "
            "messages/s), so wall-clock rates vary between runs more than CPU per message does, and the "
            "section's first line gives the machine's speed at the time. Where the service's time goes "
            "(py-spy, 2026-11-24, loopback): the status callbacks' HTTP handling (form, signature) ~23%, the "
            "SMTP conversation ~22% (aiosmtplib's four round trips and its line-ending and dot-stuffing "
            "passes over each message), the event loop's own C code ~13%, the twilio client's request "
            "through aiohttp ~13%, SQLite's thread ~7%, the group commits ~7%, the outbox loop ~6%. Until "
            "`coordinator serve` set the young generation's threshold to 20,000 (coordinator/heap.py), "
            "CPython's collector took another 15-20% of the service's CPU at its default of 700: "
            "~2,500 collections per fan-out walking the sends in flight.")
        add(f"- `POST /api/incidents` answered after {f['trigger_answer_s']:.1f} s: the publish (deliveries written "
            "in chunks of 500, the outbox woken after each) runs inside the request, while the outbox is already "
            f"sending; the first chunk is 50, so the first script SMS left {ms(f['first_v1_sms_s'])} after the "
            f"trigger (the role notices {ms(f['first_accept_s'])}).")
        add(f"- RSS: the fan-out itself adds {mb(fanout_peak(f) - f['rss_before_kb']):.0f} MB; before it: the "
            f"service's imports (~75 MB) and the {svc['people']:,}-person catalog "
            f"({mb(svc['rss_after_catalog_kb']):.0f} MB right after `load_catalog`, which took "
            f"{svc['load_catalog_s']:.1f} s). The YAML is read from the parser's events (coordinator/config/yamlsource.py), "
            "not through a node tree with two marks per node: that tree (~50 MB for 10,000 people) was freed "
            "after loading but left the allocator's arenas fragmented for the life of the process (the last round "
            "measured 167 MB before the fan-out). `malloc_trim(0)` after loading gave back only ~10 MB then, 2 MB "
            "now, and copying the catalog afresh nothing (the copy fills the same holes), so neither is used. "
            "The run over the simulated network comes after the loopback run and the rate-limited windows in the "
            "same process, so its RSS holds what those left behind; target 4 is read from the first run.")
        add("- Detection to first script SMS with the 10,012-person audience (the table below): the publication "
            "walks the audience one person at a time (`roster.in_scope`) and, once its first chunk of 50 is "
            "written, waits (at most 100 ms) for this process's outbox to claim it before writing the chunks of "
            "500 that follow. Before, it resolved the whole audience first (~28 ms) and its next 500-delivery "
            "write queued ahead of the outbox's first claim, so the first script SMS came p50 117-291 ms after the "
            "crossing complaint over earlier runs (full garbage collections landing in the publish made the "
            "spread); the same trials now measure ~40 ms.")
        net = svc.get("fanout_net")
        if net:
            add(f"- The naive loop and the network: on loopback the sandbox answers in about 1 ms, so a sequential "
                f"loop already runs at {f['naive']['rate']:,.0f} SMS/s there and 50x that is out of reach of any "
                "service on one core: on loopback the ratio measures CPU per message. What the fan-out's concurrency "
                f"buys shows over a network: with every Twilio answer {net['api_latency'] * 1000:.0f} ms late (the "
                f"sandbox's `latency`), the naive loop manages {net['naive']['rate']:.1f} SMS/s and the fan-out keeps "
                f"up to {net['sms_concurrency']} SMS requests in flight (peak seen by the sandbox: "
                f"{net['provider_stats'].get('peak_concurrency', 0)}). At 100 in flight, the default "
                "(Twilio's default account concurrency), SMS top out at 1,000/s at that latency, so 10,000 SMS alone "
                "take 10 s; reaching 2,000 messages/s over such a network takes a raised account limit and "
                "`sms_concurrency` to match (the SMS channel keeps as many connections open).")
        add("")
    if svc and svc.get("profiled"):
        pr = svc["profiled"]
        parts = pr["profile_parts"]
        total = parts[0][1] or 1.0
        add(f"### Where the time goes (cProfile, a separate {pr['recipients']:,}-person fan-out, `--profile`)")
        add("")
        add(f"Under the profiler: {pr['accepted']:,} messages in {pr['last_accept_s']:.1f} s; service CPU "
            f"{pr['service_cpu_s']:.1f} s, provider process CPU {pr['provider_stats']['cpu_s']:.1f} s. Inclusive "
            "time on the event loop (a coroutine is counted only while it runs; parts overlap where one calls "
            "another):")
        add("")
        add("| part | seconds | share of the loop |")
        add("| --- | --- | --- |")
        for label, value in parts:
            add(f"| {label} | {value:.1f} | {value / total * 100:.0f}% |")
        add("")
    if lat or (svc and svc.get("latency_10k")):
        add("### Detection to first SMS (real system clock)")
        add("")
        add("| audience | incidents timed (on a category-wide stream) | complaints to cross "
            "| crossing POST answered p50 | first SMS (any) p50 / p99 / max "
            "| first script v1 SMS p50 / p90 / p99 / max |")
        add("| --- | --- | --- | --- | --- | --- |")
        for label, l in (("shipped contacts (10-12 per region)", lat["latency"] if lat else None),
                         (f"{svc['fanout']['recipients']:,} in ningbo" if svc else "", svc.get("latency_10k") if svc else None)):
            if not l:
                continue
            trials = [t for t in l["trials"] if t.get("key")]
            v1 = [t["first_v1_sms_s"] for t in trials if t["first_v1_sms_s"] is not None]
            posts = [t["post_s"] for t in trials if t.get("post_s") is not None]
            crosses = sorted({t["complaints"] for t in trials})
            wide = sum(1 for t in trials if str(t["key"]).endswith("/*"))
            add(f"| {label} | {len(trials)} ({wide}) | {', '.join(str(c) for c in crosses)} "
                f"| {ms(_pct(posts, 0.5)) if posts else 'n/a (still publishing)'} "
                f"| {ms(l['any']['p50'])} / {ms(l['any']['p99'])} / {ms(l['any']['max'])} "
                f"| {ms(l['v1']['p50'])} / {ms(_pct(v1, 0.9))} / {ms(l['v1']['p99'])} / {ms(l['v1']['max'])} |")
        add("")
        if lat:
            h = lat["latency"]["history"]
            add(f"History: {h['complaints']:,} complaints over {args.days} days in {h['streams']} streams (broadband "
                "and outage x hangzhou, ningbo, wenzhou, plus the category-wide ones), loaded once with "
                "`services.intake.submit` + `services.pipeline.catch_up()`; each round a copy of that store, a fresh "
                "service, one trial per stream in random order (broadband-outage and mobile-outage, both `approval: "
                "auto`). Timed from the start of the POST of the crossing complaint (after which the incident "
                "existed) to the SMS channel's send returning. The role notices to the four role holders go out "
                "before the script.")
            add("")
    return "\n".join(lines) + "\n"


def fanout_peak(f: dict[str, Any]) -> int:
    """The service's peak RSS during the fan-out: sampled VmRSS, and VmHWM when it could
    be reset at the start of the fan-out (otherwise VmHWM also covers catalog loading)."""
    return max(f["rss_peak_kb"], f["hwm_kb"] if f.get("hwm_reset") else 0)


def _pct(values: list[float], q: float) -> float:
    from .latency import percentile
    return percentile(values, q)


def _spread(values: list[int]) -> str:
    inner = values[1:-1] or values
    if not inner:
        return "n/a"
    return f"{min(inner):,} / {sorted(inner)[len(inner) // 2]:,} / {max(inner):,}"


def _answers(answers: dict[str, int]) -> str:
    return ", ".join(f"{n:,} x {code}" for code, n in sorted(answers.items()))


def _write_section(path: Path, section: str) -> None:
    """Replace the "## Fan-out" section of `path` (up to the next "## "), keeping the rest."""
    text = "\n" + path.read_text("utf-8") if path.exists() else ""
    start = text.find("\n## Fan-out\n")
    if start < 0:
        text = text.rstrip() + "\n\n" + section.strip() + "\n"
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + "\n" + section.strip() + "\n" + (text[end:] if end >= 0 else "")
    path.write_text(text.lstrip("\n"), "utf-8")


def main() -> None:
    if "--smpp" in sys.argv[1:]:  # the SMPP section instead (issue #18): bench/fanout/smpp_report.py
        from .smpp_report import main as smpp_main
        smpp_main([a for a in sys.argv[1:] if a != "--smpp"])
        return
    parser = argparse.ArgumentParser(description="fan-out benchmark (see bench/fanout/README.md)")
    parser.add_argument("--people", type=int, default=10_000, help="synthetic frontline staff in ningbo")
    parser.add_argument("--naive", type=int, default=300, help="messages in the naive sequential loop")
    parser.add_argument("--rates", default="200,500,1000", help="sms_rate limits to hold, segments/s")
    parser.add_argument("--window", type=float, default=10.0, help="seconds measured per rate-limited run")
    parser.add_argument("--api-latency", type=float, default=0.1,
                        help="Twilio answer delay for the fan-out over a simulated network (0: skip it)")
    parser.add_argument("--net-sms-concurrency", type=int, default=250,
                        help="sms_concurrency for the fan-out over the simulated network")
    parser.add_argument("--api-naive", type=int, default=50, help="messages in the naive loop over that network")
    parser.add_argument("--rounds", type=int, default=20, help="fresh stores for the latency trials (6 trials each)")
    parser.add_argument("--latency-rounds", type=int, default=5, help="latency trials with the 10k audience")
    parser.add_argument("--days", type=int, default=3, help="days of complaint history")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: service, latency")
    parser.add_argument("--inproc", action="store_true",
                        help="also run the 10k fan-out with sandbox and inbox in the service's process (~3 min)")
    parser.add_argument("--profile", action="store_true", help="cProfile the 10k fan-out (printed; slows it)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "RESULTS.md")
    parser.add_argument("--json", type=Path, help="also keep the raw results here")
    parser.add_argument("--from-json", type=Path, help="write the section from raw results kept with --json")
    args = parser.parse_args()
    args.rates_asked = {500.0, 1000.0}
    skip = {s for s in args.skip.split(",") if s}
    started = time.perf_counter()
    results: dict[str, Any] = {}
    if args.from_json:
        results = json.loads(args.from_json.read_text("utf-8"))
        skip = {"service", "inproc", "latency"}
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        work = Path(tmp)
        config = work / "config"
        config.mkdir()
        if skip != {"service", "inproc", "latency"}:
            write_config(config, args.people)
        if skip != {"service", "inproc", "latency"}:
            results["machine"] = describe()
        if "service" not in skip:
            results["service"] = run_part("service", [
                "--config", str(config), "--people", str(args.people), "--naive", str(args.naive), "--rates", args.rates,
                "--window", str(args.window), "--api-latency", str(args.api_latency),
                "--net-sms-concurrency", str(args.net_sms_concurrency), "--api-naive", str(args.api_naive),
                "--latency-rounds", str(args.latency_rounds), "--days", str(args.days),
                *(["--profile"] if args.profile else [])], work)
        if args.inproc and "inproc" not in skip:
            results["inproc"] = run_part("inproc", ["--config", str(config), "--people", str(args.people)], work)
        if "latency" not in skip:
            results["latency"] = run_part("latency", ["--rounds", str(args.rounds), "--days", str(args.days)], work)
    seconds = results.setdefault("seconds", time.perf_counter() - started)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False), "utf-8")
    profile = results.get("service", {}).get("profiled", {}).pop("profile", None)
    text = report(results, args, seconds)
    print()
    print(text)
    if profile:
        print(profile)
    _write_section(args.out, text)
    print(f"written to {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")


if __name__ == "__main__":
    main()
