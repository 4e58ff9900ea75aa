"""`flask --app wsgi prune`: delete events past the retention period and expired revocations."""
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from . import store
from .timeutil import utcnow


@click.command("prune")
@with_appcontext
@click.option("--days", type=float, default=None, help="Keep this many days of events (default: RETENTION_DAYS).")
def prune_command(days):
    """Delete emotion events older than the retention period, and revoked tokens that have expired."""
    days = current_app.config["RETENTION_DAYS"] if days is None else days
    if days <= 0:
        counts = store.prune(older_than=None)
        click.echo(f"events kept forever (RETENTION_DAYS=0); expired revocations deleted: {counts['revoked_tokens']}")
        return
    counts = store.prune(older_than=utcnow() - timedelta(days=days))
    click.echo(f"deleted {counts['events']} events older than {days:g} days and {counts['revoked_tokens']} expired revocations")
