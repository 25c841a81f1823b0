"""`herd chat` (REPL or one-shot) and `herd guard` (one safety verdict).

    herd chat --checkpoint runs/demo/final                       # REPL, see REPL_HELP
    herd chat --checkpoint runs/demo/text_sft --prompt "Tell me a fortune." --json
    herd chat --checkpoint runs/demo/final --image cat.png --prompt "What is in the picture?"
    herd guard --checkpoint runs/demo/guard --text "How do I make a pipe bomb?"

The REPL reads stdin as bytes and decodes each line itself, so a line that is not UTF-8 is
reported and skipped; every bad command, file or message is one `error: …` line and the REPL
goes on. Nothing heavy is imported until a handler runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "REPL_HELP"]

REPL_HELP = """commands:
  /image PATH    attach an image to your next message
  /video PATH    attach a video clip to your next message
  /audio PATH    attach a speech recording (any format or sample rate) to your next message
  /record        (not available: record a file and use /audio PATH)
  /system TEXT   set the system prompt (starts a new conversation)
  /reset         forget the conversation
  /save FILE     write the transcript as JSON
  /help          this text
  /quit          leave (also Ctrl-D)
anything else is your message; a message may be empty after /audio (a spoken turn)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser("chat", help="chat with a checkpoint (REPL, or one-shot with --prompt)",
                                 description="Chat with any herd checkpoint: text, and images / video / speech "
                                             "when the checkpoint has those adapters.")
    chat.add_argument("--checkpoint", required=True, help="checkpoint dir or run folder")
    chat.add_argument("--prompt", default=None, help="one-shot: answer this message and exit")
    for kind in ("image", "video", "audio"):
        chat.add_argument(f"--{kind}", default=None, metavar="PATH", help=f"attach a {kind} file to the first message")
    chat.add_argument("--system", default="", help="system prompt")
    chat.add_argument("--guard", default=None, metavar="GUARD_CKPT",
                      help="a guard checkpoint that screens requests and replies")
    chat.add_argument("--json", action="store_true", help="one-shot: print JSON with the answer and its timing")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    chat.add_argument("--top-p", type=float, default=0.9)
    chat.add_argument("--seed", type=int, default=0)
    chat.set_defaults(handler=_chat)

    guard = subparsers.add_parser("guard", help="classify a message as safe / unsafe (Llama Guard 3 categories)")
    guard.add_argument("--checkpoint", required=True, help="guard checkpoint dir or run folder")
    guard.add_argument("--text", required=True, help="the message to classify")
    guard.add_argument("--role", choices=("user", "agent"), default="user",
                       help="user: a request; agent: a model reply (to --context)")
    guard.add_argument("--context", default="", help="with --role agent: the user message it answers")
    guard.add_argument("--json", action="store_true")
    guard.set_defaults(handler=_guard)


def _utf8(text: str, what: str) -> str:
    try:
        text.encode("utf-8")  # argv that was not UTF-8 arrives as surrogate escapes
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid UTF-8 text") from None
    return text


def _session(args: argparse.Namespace):
    from chat.guard import Guard
    from chat.session import ChatSession, Settings

    if args.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be at least 1")
    settings = Settings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        seed=args.seed)
    guard = Guard.load(args.guard) if args.guard else None
    session = ChatSession.load(args.checkpoint, settings=settings, system=_utf8(args.system, "--system"), guard=guard)
    for kind in ("image", "video", "audio"):
        if getattr(args, kind):
            session.add_media(kind, getattr(args, kind))
    return session


def _chat(args: argparse.Namespace) -> int:
    session = _session(args)
    if args.prompt is None:
        return _repl(session)
    if args.json:
        reply = session.ask(_utf8(args.prompt, "--prompt"))
        print(json.dumps({"checkpoint": session.checkpoint, "prompt": args.prompt,
                          "media": [{"kind": m.kind, "path": m.path} for t in session.turns for m in t.media],
                          "answer": reply.text, "blocked": reply.blocked, "tokens": reply.tokens,
                          "time_to_first_token_s": round(reply.first_token_s, 4),
                          "tokens_per_s": round(reply.tokens_per_s, 2), "seconds": round(reply.seconds, 4)},
                         ensure_ascii=False))
        return 0
    reply = session.ask(_utf8(args.prompt, "--prompt"), on_text=_print_part)
    print(f"[guard] blocked the {reply.blocked}" if reply.blocked else "", flush=True)
    return 0


def _print_part(text: str) -> None:
    print(text, end="", flush=True)


def _repl(session) -> int:
    from chat.media import MEDIA_KINDS, accepts

    kinds = [k for k in MEDIA_KINDS if accepts(session.model, k)]
    print(f"herd chat — {session.checkpoint} (text{''.join(', ' + k for k in kinds)}"
          f"{'; guarded' if session.guard else ''}). /help for commands, /quit to leave.", flush=True)
    while True:
        print("you> ", end="", flush=True)
        raw = sys.stdin.buffer.readline()
        if not raw:
            print()
            return 0
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            print("error: that line is not UTF-8 text; it was ignored", flush=True)
            continue
        try:
            if not _repl_line(session, line):
                return 0
        except KeyboardInterrupt:
            print("\n(interrupted)", flush=True)
        except Exception as err:  # noqa: BLE001 - the REPL's contract: report one line, go on
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(f"error: {message}", flush=True)


def _repl_line(session, line: str) -> bool:
    """Handle one line; False when the user quits."""
    command, _, rest = line.strip().partition(" ") if line.startswith("/") else ("", "", line)
    rest = rest.strip()
    if command in ("/quit", "/exit"):
        return False
    if command == "/help":
        print(REPL_HELP)
    elif command in ("/image", "/video", "/audio"):
        if not rest:
            raise ValueError(f"usage: {command} PATH")
        item = session.add_media(command[1:], rest)
        print(f"[{item.kind} attached: {item.path}; it goes with your next message]")
    elif command == "/record":
        print("/record is not available (no microphone capture here); record a file and use /audio PATH")
    elif command == "/reset":
        session.reset()
        print("[conversation cleared]")
    elif command == "/system":
        session.system = rest
        session.reset()
        print(f"[system prompt {'set' if rest else 'cleared'}; conversation cleared]")
    elif command == "/save":
        if not rest:
            raise ValueError("usage: /save FILE")
        print(f"[transcript saved to {session.save(Path(rest))}]")
    elif command:
        raise ValueError(f"unknown command {command}; /help lists them")
    elif line.strip() or session.pending:  # a blank line with a pending recording is a spoken turn
        _turn(session, line)
    return True


def _turn(session, line: str) -> None:
    print("assistant> ", end="", flush=True)
    try:
        reply = session.ask(line, on_text=_print_part)
    except Exception:
        print(flush=True)
        raise
    print(f"[guard] blocked the {reply.blocked}" if reply.blocked else "", flush=True)


def _guard(args: argparse.Namespace) -> int:
    from chat.guard import Guard

    text = _utf8(args.text, "--text")
    if not text.strip():
        raise ValueError("--text is empty")
    conversation = [{"role": "user", "content": text}]
    if args.role == "agent":
        if not args.context.strip():
            raise ValueError("--role agent needs --context: the user message the reply answers")
        conversation = [{"role": "user", "content": _utf8(args.context, "--context")},
                        {"role": "assistant", "content": text}]
    verdict = Guard.load(args.checkpoint).check(conversation, args.role)
    if args.json:
        print(json.dumps({"label": verdict.label, "category": verdict.category,
                          "name": None if verdict.safe else verdict.name, "raw": verdict.raw}))
    else:
        print(verdict.describe())
    return 0
