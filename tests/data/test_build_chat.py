"""data.build_chat's dialogue generators on synthetic documents: the repeat and copy tasks ask for
exactly the text after the prompt (copy in the speech stage's prompt too), and copy strings use the
split's words."""

from __future__ import annotations

from data.build_chat import make_dialogues
from data.text_sources import Doc

SENTENCES = [f"The {a} {b} walked past the {c} garden." for a in ("red", "old", "tall", "quiet")
             for b in ("dog", "man", "horse") for c in ("green", "wet", "small")]


def _dialogues(sizes: dict[str, int]) -> list[dict]:
    docs = [Doc(f"n{i}", "austen", "novel", " ".join(SENTENCES[i * 4:(i + 1) * 4]), "g") for i in range(9)]
    return make_dialogues({"train": docs}, 0, sizes)["train"]


def test_repeat_and_copy_answers_are_the_prompt_text():
    items = _dialogues({"define": 0, "fortune": 0, "continue": 0, "repeat": 30, "copy": 40})
    tasks = {t: [d for d in items if d["task"] == t] for t in ("repeat", "copy")}
    assert len(tasks["repeat"]) == 27 and len(tasks["copy"]) == 36  # the train share, 90 %
    heads = {}
    for d in tasks["repeat"] + tasks["copy"]:
        prompt, answer = d["messages"][0]["content"], d["messages"][1]["content"]
        assert prompt.endswith(" " + answer)
        heads.setdefault(d["task"], set()).add(prompt[: len(prompt) - len(answer)].strip())
    assert heads == {"repeat": {"Repeat after me:"}, "copy": {"Repeat after me:", "Repeat after me in English:"}}
    vocabulary = {w for s in SENTENCES for w in s.split()}
    for d in tasks["copy"]:
        words = d["answer"].split()
        assert 3 <= len(words) <= 14 and set(words) <= vocabulary


def test_copy_is_optional_in_the_sizes():
    items = _dialogues({"define": 0, "fortune": 0, "continue": 0, "repeat": 10})
    assert "copy" not in {d["task"] for d in items}
