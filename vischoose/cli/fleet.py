"""vischoose fleet: what a Ray cluster offers, kind of machine by kind, and whether vischoose runs there."""

from typing import Annotated

import typer

from vischoose.cli.common import Commands, JsonOpt, OnOpt, reported_errors

commands = Commands()


@commands.command("fleet")
def fleet_cmd(
    cluster: Annotated[str, typer.Option("--cluster", help="HOST:PORT (the head, from a node of the cluster), "
                                         "ray://HOST:10001 (Ray Client) or auto; needs vischoose[fleet].")] = "auto",
    on: OnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What a Ray cluster offers: its kinds of machine, how many nodes of each, and whether vischoose runs there."""
    with reported_errors():
        from vischoose.fleet import cluster as ray_cluster
        from vischoose.fleet import kinds, overview
        from vischoose.report import fleet as report_fleet

        wanted = kinds.labels(on)
        with ray_cluster.connect(cluster) as session:
            found = overview.overview(session, wanted)
    report_fleet.show_overview(found, as_json)
