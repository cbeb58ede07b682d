"""`coordinator demo` end to end: every step of the story happens, or it fails."""

from __future__ import annotations

from pathlib import Path

from coordinator.commands.demo import run_demo

from .conftest import REPO


async def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_demo(REPO, tmp_path / "demo.db", say=lines.append)
    assert result.ok, "\n".join(lines)
    assert [c.what for c in result.checks] == [
        "a surge opened exactly one incident", "roles assigned", "script v1 sent to everyone in scope",
        "every recipient got the same text", "messenger cards sent", "acknowledgements recorded",
        "escalation fired for the rest",
        "incident resolved", "stand-down sent",
    ]
    text = "\n".join(lines)
    assert "【统一口径v1】" in text and "【应急解除】" in text and "/sandbox/" in text
    assert "pressed 确认 on the dingtalk card: HTTP 200" in text and "pressed 确认 on the wecom card: HTTP 200" in text


async def test_the_demo_tells_the_same_story_over_smpp(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_demo(REPO, tmp_path / "demo.db", say=lines.append, sms="smpp")
    assert result.ok, "\n".join(lines)
    assert len(result.checks) == 9
    assert "smpp://127.0.0.1:" in "\n".join(lines)
