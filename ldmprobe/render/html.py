"""The one Jinja2 environment every HTML page is rendered with: the templates shipped in
``render/templates/``, autoescaped (a user's term, template or path can never become markup),
an undefined name an error. jinja2 is imported when the first page is written, not before."""

from __future__ import annotations

from functools import cache


@cache
def environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("ldmprobe.render", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(name: str, /, **context) -> str:
    """The page (or part) ``templates/name`` with ``context``, as markup another page embeds as is."""
    return safe(environment().get_template(name).render(**context))


def macros(name: str, /, **context):
    """The macros of ``templates/name``, seeing ``context`` (for a part a test renders alone)."""
    return environment().get_template(name).make_module(context)


def safe(markup: str):
    """Markup ldmprobe drew itself (an inline SVG plot), embedded unescaped."""
    from markupsafe import Markup

    return Markup(markup)
