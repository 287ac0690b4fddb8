"""``--external-ca protocol=cfssl,url=URL[,cacert=FILE]``: parsed here, checked by the daemon (_external_ca)."""

from __future__ import annotations

from typing import Any, Callable

import click

from ._common import read_optional_file

__all__ = ["EXTERNAL_CA_HELP", "external_ca_option", "parse_external_ca"]

EXTERNAL_CA_HELP = (
    "A CFSSL signing service that holds the root key: protocol=cfssl,url=https://HOST:PORT[,cacert=FILE] "
    "(cacert: the CA of the service's TLS certificate; default: the root itself). Repeat for failover, in order."
)

_KEYS = ("protocol", "url", "cacert")


def parse_external_ca(text: str) -> dict[str, Any]:
    """One ``--external-ca`` value as the daemon takes it: protocol, url, and the cacert file's bytes.

    Raises:
        click.BadParameter: a field that is not key=value, an unknown or repeated key, no protocol or url.
    """
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in _KEYS or key in fields or not value.strip():
            raise click.BadParameter(f"{part.strip()!r} in {text!r}: give protocol=cfssl,url=URL[,cacert=FILE]",
                                     param_hint="--external-ca")
        fields[key] = value.strip()
    if "protocol" not in fields or "url" not in fields:
        raise click.BadParameter(f"{text!r} needs protocol=cfssl and url=URL", param_hint="--external-ca")
    return {"protocol": fields["protocol"], "url": fields["url"],
            "cacert_pem": read_optional_file(fields.get("cacert"), "external CA cacert")}


def _parse_all(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[dict[str, Any]]:
    return [parse_external_ca(value) for value in values]


def external_ca_option(help: str = EXTERNAL_CA_HELP) -> Callable[[Any], Any]:
    """The repeatable ``--external-ca SPEC`` option, giving the command a list of parsed entries."""
    return click.option("--external-ca", "external_cas", metavar="protocol=cfssl,url=URL[,cacert=FILE]",
                        multiple=True, callback=_parse_all, help=help)
