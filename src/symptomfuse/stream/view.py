"""What a person sees of a live stream: a terminal view redrawn in place, and JSON lines for programs.

The view shows one bar per modality and one for the fused result, each the probability of the positive
class, with the modality's quality, and always the notice that this is a research tool, not a diagnosis.
When the output is not a terminal, each event is one plain line instead.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from symptomfuse import NOTICE

BAR = 30


def _bar(p: float | None) -> str:
    if p is None:
        return " " * BAR
    filled = int(round(p * BAR))
    return "#" * filled + "-" * (BAR - filled)


def _value(p: float | None) -> str:
    return "  -- " if p is None else f"{p:5.2f}"


def _unlike(entry: dict) -> str:
    return "  UNLIKE THE TRAINING DATA" if entry.get("unlike_training") else ""


def render(event: dict, positive: str | None) -> list[str]:
    """The view's lines for one event."""
    what = f"p({positive})" if positive else "top-class probability"
    lines = [f"t = {event['t']:7.2f} s   latency {event['latency_ms']:5.0f} ms   bars: {what}",
             f"*** {NOTICE.upper()} ***"]
    for m, e in event["modalities"].items():
        lines.append(f"{m:<10} [{_bar(e['p'])}] {_value(e['p'])}  {e['quality']}{_unlike(e)}")
    f = event["fused"]
    if f["p"] is None:
        state = "no usable modality: abstain"
    elif f.get("unlike_training"):
        state = f"abstains: {'+'.join(f['unlike_training'])} unlike the training data"
    else:
        said = _said(f)
        state = f"{said}{' (uncertain: abstain)' if f['abstain'] else ''}  from {'+'.join(f['modalities'])}"
    lines.append(f"{'fused':<10} [{_bar(f['p'])}] {_value(f['p'])}  {state}")
    return lines


def _said(fused: dict) -> str:
    """What the fused result says: the predicted rating of a ratings model (curate --ordinal), which is what
    evaluation scores, else the most probable class."""
    r = fused.get("rating")
    return f"rating {r['predicted']} (expected {r['expected']:.2f})" if r else str(fused["label"])


def render_guide(msg: dict) -> list[str]:
    """A guided session's message (``stream.guided``) as lines for the terminal: a task's prompt, or the
    session's result."""
    if msg["type"] == "guide":
        task = msg["task"]
        if task is None:
            return [f"-- {'all tasks done' if msg['phase'] == 'done' else 'finishing: the last windows...'}"]
        if msg["phase"] == "prepare":
            return [f"-- task {msg['step'] + 1}/{msg['steps']}: {task['title']} ({task['seconds']:g} s) in "
                    f"{msg['remaining_s']:.0f} s. {task['instruction']}"]
        return [f"-- task {msg['step'] + 1}/{msg['steps']}: {task['title']}: NOW, for {msg['remaining_s']:.0f} s"]
    if msg["type"] == "guided_result":
        r = msg["result"]
        f = r["fused"]
        head = "session result: " + ("abstains: " + f["why"] if f["abstain"] else _said(f))
        if f["p"] is not None:
            head += f"  (p {f['p']:.2f}, 90% interval {f['interval'][0]:.2f}-{f['interval'][1]:.2f}, " \
                    f"uncertainty {f['uncertainty']:.2f}, from {'+'.join(f['modalities'])})"
        lines = [head]
        for step in r["steps"]:
            usable = ", ".join(f"{m} {n}/{step['windows']}" for m, n in step["usable"].items())
            own = ", ".join(f"{m} {p:.2f}" for m, p in step["p"].items()) or "--"
            c = step["contribution"]
            lines.append(f"  {step['title']:<22} usable windows: {usable:<28} own models: {own:<22} "
                         f"contribution: {'--' if c is None else f'{c:+.2f}'}")
        return lines + [f"*** {r['notice'].upper()} ***"]
    return []


class LiveView:
    """Redraws the view in place on a terminal; writes one line per event elsewhere."""

    def __init__(self, positive: str | None, out: TextIO | None = None):
        self.positive, self.out = positive, out if out is not None else sys.stdout
        self.tty = self.out.isatty()
        self._drawn = 0

    def show(self, event: dict) -> None:
        lines = render(event, self.positive)
        if self.tty:
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F")  # back to the view's first line
            self.out.write("".join(f"{line}\x1b[K\n" for line in lines))
            self._drawn = len(lines)
        else:
            f = event["fused"]
            mods = "  ".join(f"{m} {_value(e['p']).strip()} ({e['quality']}{', unlike training data' if e.get('unlike_training') else ''})"
                             for m, e in event["modalities"].items())
            self.out.write(f"t={event['t']:.2f}s  {mods}  fused {_value(f['p']).strip()}"
                           f"{' abstain' if f['abstain'] else ''}  [{NOTICE}]\n")
        self.out.flush()


    def note(self, lines: list[str]) -> None:
        """Lines that stay (a guided session's prompts and result); the view is drawn again below them."""
        self.out.write("".join(f"{line}\n" for line in lines))
        self._drawn = 0
        self.out.flush()


def write_jsonl(out: TextIO, event: dict) -> None:
    out.write(json.dumps(event) + "\n")
    out.flush()
