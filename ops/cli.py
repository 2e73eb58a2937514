"""``bookstore``: the operator's command line (migrate, declare-topology, seed,
create-admin, run, sdk, images-orphans...), and
the entry points of the container image (run-service, gateway, ping)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common.notices import silence_import_notices

silence_import_notices()

from sqlalchemy import create_engine, make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from common.config import SERVICE_PACKAGES, InvalidSettings, database_url  # noqa: E402


def _database_unreachable(error: OperationalError, service: str | None = None) -> str:
    """One line for an operator instead of a traceback: which database, where, and what
    PostgreSQL (or the network) said."""
    said = str(error.orig or error).strip().splitlines()[0]
    if service is None:
        return f"error: a database cannot be used: {said}"
    where = make_url(database_url(service)).render_as_string(hide_password=True)
    variable = f"{service.upper()}_DATABASE_URL"
    return f"error: {service}: its database {where} cannot be used ({variable}): {said}"


def _session(service: str) -> Session:
    return Session(create_engine(database_url(service)))


def migrate(args: argparse.Namespace) -> int:
    from ops import databases

    unknown = set(args.services) - set(SERVICE_PACKAGES)
    if unknown:
        print(f"error: unknown service(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for service in args.services or list(SERVICE_PACKAGES):
        try:
            databases.prepare(service)
        except OperationalError as error:
            print(_database_unreachable(error, service), file=sys.stderr)
            return 1
        print(f"{service}: database ready, migrations applied")
    if args.skip_topology:
        return 0
    return declare_topology(args)


def declare_topology(args: argparse.Namespace) -> int:
    """Declares every exchange, queue and binding the services consume from, so that no
    event published before its consumer first starts is lost (docs/decisions/0060)."""
    from common.config import service_config
    from common.topology import declare_platform

    # Any service's configuration names the broker (one AMQP_URI for all).
    config = service_config("catalog")
    declared = declare_platform(config["AMQP_URI"], config)
    print(
        f"broker: {declared['exchanges']} exchanges and {declared['queues']} queues declared "
        "(every consumer's queue exists before any producer publishes)"
    )
    return 0


def seed(args: argparse.Namespace) -> int:
    from svc_catalog.seed import seed_catalog

    with _session("catalog") as session:
        added = seed_catalog(
            session, books=args.books, seed=args.seed, with_events=not args.skip_events
        )
    print(f"catalog: {added} books added ({args.books} wanted, seed {args.seed})")
    return 0


def create_admin(args: argparse.Namespace) -> int:
    from common.errors import BookstoreError
    from svc_auth.accounts import create_admin as make_admin

    password = os.environ.get(args.password_env) if args.password_env else None
    if password is None:
        password = getpass.getpass(f"Password for {args.email}: ")
    try:
        with _session("auth") as session:
            admin = make_admin(session, args.email, password, args.name)
            session.commit()
    except BookstoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"admin: {admin['email']} (id {admin['id']}, roles {', '.join(admin['roles'])})")
    return 0


def reset_signing_keys(args: argparse.Namespace) -> int:
    """Replaces auth's signing keys with new ones sealed with the current
    ``AUTH_KEY_PASSPHRASE``: the way out when the passphrase they were sealed with is
    lost. Every session ends (docs/decisions/0091)."""
    from svc_auth.signing import replace_signing_keys, unreadable_key_ids

    passphrase = os.environ.get("AUTH_KEY_PASSPHRASE", "")
    if not passphrase:
        print("error: set AUTH_KEY_PASSPHRASE (bin/run keeps it in .env.local)", file=sys.stderr)
        return 2
    with _session("auth") as session:
        unreadable = unreadable_key_ids(session, passphrase.encode())
        if not unreadable and not args.force:
            print(
                "The signing keys open with this AUTH_KEY_PASSPHRASE: nothing to recover. "
                "To rotate keys normally (sessions continue), see docs/operations.md; "
                "--force replaces them anyway.",
            )
            return 0
        print(
            "This replaces auth's token signing keys. Every signed-in session ends: refresh "
            "tokens are revoked now, and access tokens stop working when the gateways next "
            "load the keys (GATEWAY_JWKS_REFRESH, 5 minutes by default). Everyone signs in "
            "again. Two-factor secrets sealed with the old passphrase cannot be read either: "
            "those users sign in with a recovery code and enrol again."
        )
        if not args.yes and input("Type 'replace' to go on: ").strip() != "replace":
            print("Nothing changed.")
            return 1
        key, ended = replace_signing_keys(session, passphrase.encode())
        kid = key.kid
        session.commit()
    print(
        f"auth: new signing key {kid}; {len(unreadable)} unreadable key(s) retired; "
        f"{ended} session(s) ended"
    )
    return 0


def mail(args: argparse.Namespace) -> int:
    """Lists the emails bin/run's mail catcher kept, or shows one (ops/mailcatcher.py)."""
    from ops.mailcatcher import MAIL_DIR, caught

    mails = caught(to=args.to)
    if args.last or args.show:
        chosen = mails[-1:] if args.last else [m for m in mails if m.number == args.show]
        if not chosen:
            print("error: no such email (bookstore mail lists them)", file=sys.stderr)
            return 1
        print(chosen[0].text())
        return 0
    if not mails:
        print(f"no emails yet in {MAIL_DIR} (bin/run's mail catcher keeps them there)")
    for caught_mail in mails:
        print(caught_mail.summary())
    return 0


def events(args: argparse.Namespace) -> int:
    """Prints the events the bridge mirrored to (local) EventBridge as they arrive: a
    rule on the bus copies each to a queue that this reads (ops/standins.py)."""
    from ops import standins

    state = standins.load_state()
    if "mirror_queue" not in state:
        print(
            "error: no local EventBridge: bin/run starts one when AWS_ENDPOINT_URL is not set",
            file=sys.stderr,
        )
        return 1
    try:
        while True:
            for event in standins.mirrored_events(
                state["mirror_queue"], state["aws_endpoint"], wait_seconds=args.wait
            ):
                print(standins.describe_event(event), flush=True)
            if not args.follow:
                return 0
    except KeyboardInterrupt:
        return 0


def run(args: argparse.Namespace) -> int:
    from ops.run import run_platform

    return run_platform(
        books=args.books, port=args.port, allow_loopback_webhooks=args.allow_loopback_webhooks
    )


def run_service(args: argparse.Namespace) -> int:
    from ops.processes import service_command

    # The service's settings are checked by the command itself: a bad one is a single
    # line in the container's log and exit status 2 (ops/nameko_cli.py).
    command = service_command(args.service)
    # exec, not a child: in a container the service must be the process that receives
    # SIGTERM, so nameko stops gracefully (finishing running workers) on a rollout.
    os.execv(command[0], command)  # noqa: S606 - our own command
    return 0  # not reached


def gateway(args: argparse.Namespace) -> int:
    from ops.processes import gateway_command

    command = gateway_command()
    os.execv(command[0], command)  # noqa: S606 - our own command
    return 0  # not reached


def ping(args: argparse.Namespace) -> int:
    """Exit 0 if the service answers its ``ping`` RPC (broker and its database reachable)
    within the timeout; the container probes of nameko services run this."""
    from common import context
    from common.config import service_config
    from gateway.rpc import RpcClient, ServiceUnavailable, is_serving

    client = RpcClient(service_config(args.service)["AMQP_URI"], args.timeout)
    call_context = context.CallContext(correlation_id=context.new_correlation_id())
    try:
        outcome = client.ping_all([args.service], call_context, args.timeout)[args.service]
    except ServiceUnavailable as error:
        outcome = error.reason
    finally:
        client.close()
    print(f"{args.service}: {outcome}")
    # Degraded (serving from a fallback) passes: restarting would not bring the fallback's
    # cause back.
    return 0 if is_serving(outcome) else 1


def reconcile_payments(args: argparse.Namespace) -> int:
    """Compares our payment records with the provider's for payments made in a time
    range; prints one line per mismatch. Exit 1 when there are mismatches."""
    from common import context
    from common.config import service_config
    from gateway.rpc import RpcClient

    until = args.until or datetime.now(UTC)
    since = args.since or until - timedelta(days=1)
    client = RpcClient(service_config("payment")["AMQP_URI"], args.timeout)
    try:
        report = client.call(
            "payment",
            "reconcile",
            since.isoformat(),
            until.isoformat(),
            context=context.CallContext(correlation_id=context.new_correlation_id()),
        )
    finally:
        client.close()
    print(
        f"payments made {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC, "
        f"provider {report['provider']}: {report['checked']} checked"
    )
    if not report["comparable"]:
        print(f"not compared: {report['detail']}")
        return 0
    for mismatch in report["mismatches"]:
        order, reference = mismatch["order_id"], mismatch["reference"]
        print(f"MISMATCH order {order} ({reference}): {mismatch['problem']}")
        print(f"  ours:     {mismatch['ours']}")
        print(f"  provider: {mismatch['provider']}")
    print(f"{len(report['mismatches'])} mismatch(es)")
    return 1 if report["mismatches"] else 0


def _utc_time(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sdk(args: argparse.Namespace) -> int:
    from ops.sdk import SdkGenerationFailed, generate_sdk

    try:
        package = generate_sdk(args.output, overwrite=args.overwrite)
    except SdkGenerationFailed as error:
        print(f"error: the SDK was not generated:\n{error}", file=sys.stderr)
        return 1
    print(f"sdk: {package.name} generated in {args.output} (pip install {args.output})")
    return 0


def search_rebuild(args: argparse.Namespace) -> int:
    """Rebuilds the search index from the catalog (over RPC: the catalog's database is
    the catalog's), with a progress bar; search keeps answering meanwhile."""
    from nameko.standalone.rpc import ClusterRpcProxy
    from tqdm import tqdm

    from common.config import service_config
    from common.rpc import call_with_timeout
    from svc_search.engine import SearchEngine
    from svc_search.rebuild import rebuild_index
    from svc_search.service import fetch_categories
    from svc_search.settings import Settings as SearchSettings

    config = service_config("search")
    elastic = SearchEngine.from_settings(SearchSettings.load()).elastic
    engine = create_engine(database_url("search"))
    bars: list[tqdm] = []

    def progress(total: int | None) -> tqdm:
        label = "elasticsearch" if bars else "postgres"
        bars.append(tqdm(total=total, unit="books", desc=label, disable=args.quiet))
        return bars[-1]

    try:
        with ClusterRpcProxy({"AMQP_URI": config["AMQP_URI"]}, timeout=args.timeout) as rpc:
            categories = fetch_categories(rpc.catalog)
            summary = rebuild_index(
                engine,
                lambda after: call_with_timeout(
                    rpc.catalog.export_for_search,
                    after=after,
                    limit=args.page_size,
                    timeout=args.timeout,
                ),
                categories,
                progress=progress,
                elastic=elastic,
            )
    finally:
        for bar in bars:
            bar.close()
        engine.dispose()
    print(
        f"search: index rebuilt with {summary['documents']} books in {summary['seconds']}s "
        f"(build {summary['build']}; {summary['carried_over']} changes made meanwhile kept)"
    )
    return 0


#: What ``bookstore reconcile`` compares: copy -> (service, RPC method) (docs/decisions/0063,
#: 0140, 0141).
RECONCILED_COPIES = {
    "search-index": ("search", "reconcile_index"),
    "recommendation-inputs": ("search", "reconcile_purchases"),
    "notify-recipients": ("notify", "reconcile_recipients"),
    "analytics-windows": ("analytics", "reconcile_windows"),
}


def reconcile(args: argparse.Namespace) -> int:
    """Compares derived copies with their sources by counts and checksums per id range and
    (unless --check) repairs them; exit 1 when drift remains. ``--all`` does every copy:
    a consumer that joins late is backfilled so (docs/decisions/0140)."""
    from common import context
    from common.config import service_config
    from gateway.rpc import RpcClient

    if args.all == (args.copy is not None):
        print("name one copy to reconcile, or --all", file=sys.stderr)
        return 2
    copies = list(RECONCILED_COPIES) if args.all else [args.copy]
    client = RpcClient(service_config("search")["AMQP_URI"], args.timeout)
    remaining = 0
    try:
        for copy in copies:
            service, method = RECONCILED_COPIES[copy]
            report = client.call(
                service,
                method,
                repair=not args.check,
                context=context.CallContext(correlation_id=context.new_correlation_id()),
            )
            print(
                f"{copy}: {report['copy_rows']} rows, source {report['source_rows']}; "
                f"{report['buckets_differing']} of 256 id ranges differ: "
                f"{report['missing']} missing, {report['extra']} extra, "
                f"{report['stale']} stale; {report['repaired']} repaired"
            )
            for kind, ids in report["examples"].items():
                if ids:
                    print(f"  {kind}: {', '.join(ids)}{' ...' if len(ids) == 5 else ''}")
            drift = report["missing"] + report["extra"] + report["stale"]
            remaining += max(0, drift - report["repaired"])
    finally:
        client.close()
    return 1 if remaining else 0


def images_orphans(args: argparse.Namespace) -> int:
    """Objects in the image bucket that no image, open upload or scheduled deletion
    refers to (left by a confirmation that failed after storing): listed, or deleted
    with --delete (docs/decisions/0160)."""
    from common.db import utcnow
    from common.errors import DependencyUnavailable
    from svc_catalog import image_store
    from svc_catalog.image_objects import orphans

    store = image_store.current()
    count = 0
    try:
        with _session("catalog") as session:
            for key in orphans(session, store, utcnow()):
                if args.delete:
                    store.delete(key)
                print(f"{'deleted' if args.delete else 'orphan'}: {key}")
                count += 1
    except DependencyUnavailable as error:
        print(f"error: bucket {store.settings.bucket}: {error}", file=sys.stderr)
        return 1
    verb = "deleted" if args.delete else "found (delete them with --delete)"
    print(f"images: {count} orphaned objects {verb} in bucket {store.settings.bucket}")
    return 0


def analytics_backfill(args: argparse.Namespace) -> int:
    """Rebuilds the analytics aggregates from the order history (over RPC: the orders
    are the order service's), with a progress bar; gives the numbers the live events gave."""
    from nameko.standalone.rpc import ClusterRpcProxy
    from tqdm import tqdm

    from common.config import service_config
    from common.pagination import MAX_LIMIT
    from common.rpc import call_with_timeout
    from svc_analytics.backfill import backfill, order_pages
    from svc_analytics.settings import Settings

    config = service_config("analytics")
    with (
        ClusterRpcProxy({"AMQP_URI": config["AMQP_URI"]}, timeout=args.timeout) as rpc,
        _session("analytics") as session,
        tqdm(unit="orders", desc="orders", disable=args.quiet) as bar,
    ):
        pages = order_pages(
            lambda cursor: call_with_timeout(
                rpc.order.list_orders, cursor=cursor, limit=MAX_LIMIT, timeout=args.timeout
            )
        )
        summary = backfill(session, pages, Settings.load().windows(), bar.update)
    print(
        f"analytics: rebuilt from {summary['orders']} orders ({summary['facts']} facts) in "
        f"{summary['seconds']}s; {summary['windows_closed']} windows closed"
    )
    return 0


def analytics_evaluate(args: argparse.Namespace) -> int:
    """Injects drops and spikes into a generated order history and reports how many the
    anomaly detector finds (precision, recall)."""
    from svc_analytics.anomalies import evaluate

    report = evaluate(weeks=args.weeks, peak=args.peak, injections=args.injections, seed=args.seed)
    print(
        f"{report['windows_scored']} windows scored, {report['injected']} anomalies injected, "
        f"{report['flagged']} flagged, {report['true_positives']} of them injected"
    )
    print(f"precision {report['precision']:.3f}  recall {report['recall']:.3f}")
    for kind, counts in report["by_kind"].items():
        print(f"  {kind}s: {counts['found']} of {counts['injected']} found")
    return 0


def recommend_evaluate(args: argparse.Namespace) -> int:
    """Leave-last-out HR@10 and NDCG@10 of the recommender against popularity, on a
    generated data set and on the shop's own purchases."""
    from svc_search.evaluate import evaluate, format_table, generate_interactions
    from svc_search.recommend import load_interactions

    results = {
        "generated": evaluate(
            generate_interactions(
                users=args.users, items=args.books, clusters=args.clusters, seed=args.seed
            )
        )
    }
    if not args.generated_only:
        with _session("search") as session:
            results["shop"] = evaluate(load_interactions(session))
    print(format_table(results))
    generated = results["generated"]
    if generated is None or generated.model_hit_rate <= generated.popular_hit_rate:
        print("warning: the model does not beat popularity on the generated data", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bookstore", description=__doc__)
    commands = root.add_subparsers(required=True, metavar="command")

    command = commands.add_parser("migrate", help="create databases and apply migrations")
    command.add_argument(
        "services",
        nargs="*",
        metavar="service",
        help=f"any of {', '.join(SERVICE_PACKAGES)} (default: all)",
    )
    command.add_argument(
        "--skip-topology",
        action="store_true",
        help="do not declare the broker's queues (bookstore declare-topology does)",
    )
    command.set_defaults(handler=migrate)

    command = commands.add_parser(
        "declare-topology",
        help="declare every event exchange, queue and binding on the broker (idempotent)",
    )
    command.set_defaults(handler=declare_topology)

    command = commands.add_parser("seed", help="load the demo catalog (idempotent)")
    command.add_argument("--books", type=int, default=3000)
    command.add_argument("--seed", type=int, default=42)
    command.add_argument(
        "--skip-events",
        action="store_true",
        help="do not write product.created events (for benchmark-sized loads)",
    )
    command.set_defaults(handler=seed)

    command = commands.add_parser("create-admin", help="create or promote an administrator")
    command.add_argument("--email", required=True)
    command.add_argument("--name")
    command.add_argument(
        "--password-env",
        metavar="VAR",
        help="read the password from this environment variable instead of prompting",
    )
    command.set_defaults(handler=create_admin)

    command = commands.add_parser(
        "reset-signing-keys",
        help="replace auth's signing keys when their passphrase is lost (sessions end)",
    )
    command.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command.add_argument(
        "--force", action="store_true", help="replace keys even if they can be opened"
    )
    command.set_defaults(handler=reset_signing_keys)

    command = commands.add_parser("run", help="run the whole platform until Ctrl-C")
    command.add_argument("--books", type=int, default=3000, help="demo catalog size")
    command.add_argument("--port", type=int, default=8080)
    command.add_argument(
        "--allow-loopback-webhooks",
        action="store_true",
        help="let webhooks reach receivers on this machine (127.0.0.1, ::1); never other "
        "private addresses",
    )
    command.set_defaults(handler=run)

    command = commands.add_parser("mail", help="list or show the emails bin/run caught")
    command.add_argument("--to", metavar="ADDRESS", help="only emails to this address")
    command.add_argument("--show", type=int, metavar="N", help="print email N of the list")
    command.add_argument("--last", action="store_true", help="print the newest email")
    command.set_defaults(handler=mail)

    command = commands.add_parser(
        "events", help="print the events mirrored to bin/run's local EventBridge"
    )
    command.add_argument("--follow", action="store_true", help="keep printing until Ctrl-C")
    command.add_argument("--wait", type=int, default=2, help="seconds per poll (default 2)")
    command.set_defaults(handler=events)

    command = commands.add_parser("run-service", help="run one nameko service (containers)")
    command.add_argument("service", choices=list(SERVICE_PACKAGES))
    command.set_defaults(handler=run_service)

    command = commands.add_parser("gateway", help="serve the HTTP gateway (containers)")
    command.set_defaults(handler=gateway)

    command = commands.add_parser("ping", help="exit 0 if a service answers its ping RPC")
    command.add_argument("service", choices=list(SERVICE_PACKAGES))
    command.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    command.set_defaults(handler=ping)

    command = commands.add_parser(
        "reconcile-payments", help="compare our payments with the provider's records"
    )
    command.add_argument("--since", type=_utc_time, help="ISO time (default: a day before --until)")
    command.add_argument("--until", type=_utc_time, help="ISO time (default: now)")
    command.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    command.set_defaults(handler=reconcile_payments)

    command = commands.add_parser(
        "search-rebuild", help="rebuild the search index from the catalog (progress bar)"
    )
    command.add_argument("--page-size", type=int, default=1000, help="books per catalog call")
    command.add_argument("--timeout", type=float, default=30.0, help="seconds per catalog call")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.set_defaults(handler=search_rebuild)

    command = commands.add_parser(
        "reconcile",
        help="compare a derived copy with its source and repair the drift",
    )
    command.add_argument(
        "copy", nargs="?", choices=list(RECONCILED_COPIES), help="the copy to reconcile"
    )
    command.add_argument(
        "--all",
        action="store_true",
        help="every copy, one after another (also backfills a consumer that joined late)",
    )
    command.add_argument("--check", action="store_true", help="report only, repair nothing")
    command.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    command.set_defaults(handler=reconcile)

    command = commands.add_parser(
        "images-orphans", help="list (or --delete) image objects nothing refers to"
    )
    command.add_argument("--delete", action="store_true", help="delete them, too")
    command.set_defaults(handler=images_orphans)

    command = commands.add_parser(
        "analytics-backfill",
        help="rebuild the analytics aggregates from the order history (progress bar)",
    )
    command.add_argument("--timeout", type=float, default=30.0, help="seconds per order call")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.set_defaults(handler=analytics_backfill)

    command = commands.add_parser(
        "analytics-evaluate",
        help="precision and recall of the anomaly detector on a generated history",
    )
    command.add_argument("--weeks", type=int, default=10, help="weeks of generated history")
    command.add_argument("--peak", type=float, default=40.0, help="orders per 5 min at peak")
    command.add_argument("--injections", type=int, default=60, help="drops and spikes")
    command.add_argument("--seed", type=int, default=17)
    command.set_defaults(handler=analytics_evaluate)

    command = commands.add_parser(
        "recommend-evaluate",
        help="evaluate the recommender offline (hit rate and NDCG at 10 vs popularity)",
    )
    command.add_argument("--users", type=int, default=3000, help="generated customers")
    command.add_argument("--books", type=int, default=1500, help="generated books")
    command.add_argument("--clusters", type=int, default=12, help="generated taste clusters")
    command.add_argument("--seed", type=int, default=7)
    command.add_argument(
        "--generated-only", action="store_true", help="skip the shop's own purchases"
    )
    command.set_defaults(handler=recommend_evaluate)

    command = commands.add_parser(
        "sdk", help="generate the Python client SDK from openapi/bookstore.yaml"
    )
    command.add_argument("--output", type=Path, required=True, metavar="DIR")
    command.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    command.set_defaults(handler=sdk)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    from ops.instance import use_checkout_environment

    args = parser().parse_args(argv)
    if argv is None:
        # Run as a program (not called by a test): .env.local, and this checkout's
        # databases and vhost (ops/instance.py).
        use_checkout_environment(os.environ)
    try:
        return args.handler(args)
    except InvalidSettings as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        print(_database_unreachable(error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
