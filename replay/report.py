"""`trot replay render | resim | shadow`: each loads the episode, computes, plots, writes its JSON
summary and its section of the episode's report.md."""

from __future__ import annotations

import json
import time
from pathlib import Path

from trot.replay.episode import TOPIC_TYPES, Episode, ReplayError, load_episode
from trot.replay.plots import plot_episode, resim_plot, shadow_plot
from trot.replay.resim import resim
from trot.replay.shadow import shadow
from trot.replay.sources import SOURCES_TOPIC, sources_timeline
from trot.replay.video import render_video


def write_report(ep: Episode, out: Path, sections: dict[str, str]) -> Path:
    lines = [f"# Replay of `{ep.path.name}`", ""]
    lines += [
        f"- {k}: {v}" for k, v in ep.metadata.items() if k in ("robot", "policy_path", "policy_sha256", "started")
    ]
    lines += [
        f"- topics: {', '.join(f'{k} ({len(getattr(ep, k))})' for k in TOPIC_TYPES if getattr(ep, k) is not None)}"
    ]
    if (params := ep.policy_parameters) is not None:
        node, safety = params["node"], params["safety"]
        lines += [
            f"- policy node: {1 / params['control_period_s']:.0f} Hz ({node['control_trigger']}), watchdog "
            f"{safety['stale_periods']} periods, max_target_step {safety['max_target_step']} rad, joint_limit_margin "
            f"{safety['joint_limit_margin']} rad, standup_s {safety['standup_s']}, realtime_priority "
            f"{node['realtime_priority']}, use_sim_time {params['use_sim_time']} (all of it: trot_policy/parameters)"
        ]
    try:
        timeline, crowded = sources_timeline(ep.path)
    except Exception as exc:  # (a damaged bag: the rest of the report stands)
        timeline, crowded = [], []
        ep.notes.append(f"the recorded sources could not be read ({exc})")
    if timeline:
        summary = "at most one publisher per topic throughout"
        if crowded:
            summary = f"more than one publisher at times on {', '.join(crowded)}"
        lines += [f"- sources: {summary} (see Sources)"]
        sections = {**sections, "Sources": f"Each recorded topic's publishers ({SOURCES_TOPIC}), seconds from the "
                    "bag's start; `!`: more than one.\n\n```\n" + "\n".join(timeline) + "\n```"}  # fmt: skip
    for title, body in sections.items():
        lines += ["", f"## {title}", "", body]
    if ep.notes:
        lines += ["", "## What could not be computed", ""] + [f"- {n}" for n in dict.fromkeys(ep.notes)]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def render_cmd(bag: Path, out: Path, fps: float = 30.0, video: bool = True) -> dict:
    ep = load_episode(bag)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sections, video_error = {}, None
    if video:
        try:
            sections["Video"] = f"![video]({render_video(ep, out / 'replay.mp4', fps).name})"
        except ReplayError as exc:
            video_error = str(exc)
            ep.notes.append(video_error)
    plots = plot_episode(ep, out)
    sections["Plots"] = "\n\n".join(f"![{p.stem}]({p.name})" for p in plots)
    report = write_report(ep, out, sections)
    return {"report": str(report), "plots": [str(p) for p in plots], "seconds": time.perf_counter() - t0,
            "notes": ep.notes, "video_error": video_error}  # fmt: skip


def resim_cmd(bag: Path, out: Path, policy: str | None = None) -> dict:
    ep = load_episode(bag)
    r = resim(ep, policy)
    out.mkdir(parents=True, exist_ok=True)
    plot = resim_plot(r, out)
    summary = {
        "seconds_simulated": r.seconds_simulated,
        "wall_s": r.wall_s,
        "real_time_factor": r.seconds_simulated / max(r.wall_s, 1e-9),
        "joint_rms_rad": dict(zip(ep.joint_names, r.joint_rms.round(4).tolist(), strict=True)),
        "joint_rms_mean_rad": float(r.joint_rms.mean()),
        "base_vel_error_mean_mps": float(r.base_vel_error.mean()) if r.base_vel_error is not None else None,
        "notes": ep.notes,
    }
    (out / "resim.json").write_text(json.dumps(summary, indent=2))
    body = (f"Re-simulated {r.seconds_simulated:.1f} s in {r.wall_s:.2f} s ({summary['real_time_factor']:.0f}x real "
            f"time). Joint RMS divergence (mean over joints) {summary['joint_rms_mean_rad']:.4f} rad; base xy velocity "
            f"divergence (mean) {summary['base_vel_error_mean_mps']} m/s.\n\n![resim]({plot.name})")  # fmt: skip
    _append(out / "report.md", "Re-simulation", body)
    return summary


def shadow_cmd(bag: Path, out: Path, policy: str, threshold: float = 0.2) -> dict:
    ep = load_episode(bag)
    r = shadow(ep, policy, threshold)
    out.mkdir(parents=True, exist_ok=True)
    plot = shadow_plot(r, ep.joint_names, out)
    summary = {
        "policy": policy,
        "ticks": len(r.t),
        "rms_rad": dict(zip(ep.joint_names, r.rms.round(4).tolist(), strict=True)),
        "max_abs_rad": dict(zip(ep.joint_names, r.max_abs.round(4).tolist(), strict=True)),
        "first_divergence_s": r.first_divergence_s,
        "threshold_rad": threshold,
        "notes": ep.notes,
    }
    (out / "shadow.json").write_text(json.dumps(summary, indent=2))
    first = "never" if r.first_divergence_s is None else f"{r.first_divergence_s:.2f} s"
    body = (f"`{policy}` on the logged observations, {len(r.t)} control ticks: RMS {r.rms.mean():.4f} rad (mean over "
            f"joints), max {r.max_abs.max():.3f} rad; first divergence beyond {threshold} rad: {first}."
            f"\n\n![shadow]({plot.name})")  # fmt: skip
    _append(out / "report.md", f"Shadow: {Path(policy).name}", body)
    return summary


def _append(report: Path, title: str, body: str) -> None:
    text = report.read_text() if report.exists() else "# Replay\n"
    report.write_text(text.rstrip("\n") + f"\n\n## {title}\n\n{body}\n")
