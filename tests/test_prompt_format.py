"""The prompt format: placeholders, groups, escapes, errors that say where, safe shell output."""

from __future__ import annotations

import pytest

from projctld.config import load_config
from projctld.errors import ConfigError
from projctld.prompt.format import DEFAULT_FORMAT, FormatError, PromptFacts, parse, render

MINE = PromptFacts(project="web", upstream="github", number=42, review="approved",
                   ci="failure", waiting=3, stale=False)
BARE = PromptFacts(project="web")


def text(fmt: str, facts: PromptFacts, style: str = "plain", marker: str = "~") -> str:
    return render(parse(fmt), facts, style, marker)  # type: ignore[arg-type]


def test_the_default_format_shows_the_change_request_review_ci_and_waiting_events() -> None:
    assert text(DEFAULT_FORMAT, MINE) == "#42 approved ✗ ↑3"
    gitlab = PromptFacts(project="web", upstream="gitlab", number=7, ci="running", stale=True)
    assert text(DEFAULT_FORMAT, gitlab) == "!7 ● ~"


def test_unknown_stuck_manual_and_a_named_instance() -> None:
    # Nothing fetched yet: no change request is not a fact, `?` says it is not known.
    assert text(DEFAULT_FORMAT, PromptFacts(project="web", known=False, stale=True)) == "? ~"
    assert text(DEFAULT_FORMAT, PromptFacts(project="web", upstream="gitlab", number=7,
                                            ci="stuck")) == "!7 ◌"
    assert text(DEFAULT_FORMAT, PromptFacts(project="web", upstream="gitlab", number=7,
                                            ci="manual")) == "!7 ▷"
    ghe = PromptFacts(project="web", upstream="github", instance="ghe", number=5)
    assert text("[{instance}]{ref}", ghe) == "ghe#5"
    assert text("[{instance}]{ref}", MINE) == "#42"


def test_groups_vanish_with_their_empty_placeholders_and_nothing_is_left_over() -> None:
    assert text(DEFAULT_FORMAT, BARE) == ""
    assert text("{project}[ (#{number})][ ↑{waiting}]", BARE) == "web"
    assert text("{project}[ (#{number})][ ↑{waiting}]", MINE) == "web (#42) ↑3"
    # Text outside groups always shows.
    assert text("pj:{number}", BARE) == "pj:"


def test_escapes_make_brackets_and_braces_literal() -> None:
    assert text(r"\[{project}\] \{x\} \\", BARE) == "[web] {x} \\"


@pytest.mark.parametrize(("fmt", "problem"), [
    ("{nope}", "at 1: unknown placeholder {nope}"),
    ("ab {ref", "at 4: unknown placeholder {ref"),
    ("[{ref}", "a group [ ... ] is not closed"),
    ("{ref}]", "at 6: `]` closes no group"),
    ("[a [b]]", "at 4: groups [ ... ] do not nest"),
    ("x}", "at 2: `}` closes no placeholder"),
    ("a\\n", "at 2: `\\` escapes only { } [ ] and \\"),
])
def test_a_malformed_format_says_what_and_where(fmt: str, problem: str) -> None:
    with pytest.raises(FormatError) as caught:
        parse(fmt)
    assert caught.value.problem == problem
    assert any("{ref}" in line for line in caught.value.suggestions)


def test_colours_are_marked_zero_width_for_bash_and_zsh() -> None:
    ansi = text("{ci}", MINE, "ansi")
    assert ansi == "\x1b[31m✗\x1b[0m"
    assert text("{ci}", MINE, "bash") == "\x01\x1b[31m\x02✗\x01\x1b[0m\x02"
    assert text("{ci}", MINE, "zsh") == "%{\x1b[31m%}✗%{\x1b[0m%}"
    assert text("{ci}", MINE, "plain") == "✗"


def test_zsh_output_doubles_percent_signs_so_they_print_as_themselves() -> None:
    assert text("100% {project}", BARE, "zsh") == "100%% web"
    assert text("{stale}", PromptFacts(project="p", stale=True), "zsh", marker="%") == \
        "%{\x1b[2m%}%%%{\x1b[0m%}"


def test_control_characters_from_data_never_reach_the_terminal() -> None:
    hostile = PromptFacts(project="we\x1b]0;pwned\x07b\nx")
    assert text("{project}", hostile) == "we]0;pwnedbx"


def test_a_bad_format_in_the_config_names_the_key(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[prompt]\nformat = "{branch}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "`prompt.format`: at 1: unknown placeholder {branch}" in caught.value.message
