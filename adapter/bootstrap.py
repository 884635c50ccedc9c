"""Wiring: the one place that names the concrete classes and starts a school's adapter."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused
from sqlalchemy import Engine

from adapter import broker
from adapter.capture.poller import Capture
from adapter.config import Settings
from adapter.consumers.apply import Applier, School
from adapter.consumers.receiver import Receiver
from adapter.desk.advance import Advancer, accept_place_offer
from adapter.desk.places import PlaceAllocator
from adapter.domain import CourseRef, Role
from adapter.mapping import routes
from adapter.messages import (
    CourseLeft,
    CourseOffered,
    CourseSettingsChanged,
    CourseSyncRequested,
    DigestAnswered,
    DigestRequested,
    PlaceAnswered,
    PlaceOffered,
    PlaceRequested,
    course_ref,
)
from adapter.ops import metrics, offers, reconcile, systemd
from adapter.ops.health import Health, ping_admin_db
from adapter.ops.health import serve as serve_http
from adapter.ops.heartbeat import Lease, SchoolHeldError
from adapter.ops.logs import error_text
from adapter.publishers.relay import OutboxRelay
from adapter.store import admin
from adapter.store.db import make_engine, migrate_state
from adapter.store.localtime import AdminClock

log = structlog.get_logger("adapter")

# How long each step of closing the broker connection may take: with the broker down nothing
# answers, and what was not acknowledged or confirmed is done again after the restart.
CLOSE_TIMEOUT = 2.0


def backoff(first: float, failures: int, longest: float) -> float:
    """The pause after `failures` failures in a row: doubling from `first`, at most `longest`.
    The exponent is bounded too: after some thousand failures (hours of an outage at the
    longest pause) `2**failures` is more than a float can hold."""
    return min(first * float(2 ** min(failures, 64)), longest)


def utcnow() -> datetime:
    return datetime.now(UTC)


def admin_clock_of(settings: Settings) -> AdminClock:
    """Now as the admin DB stamps it: wall time in `[admin_db] timezone`."""
    return AdminClock(settings.admin_db.zone)


@dataclass(slots=True)
class Engines:
    admin: Engine
    state: Engine


def engines(settings: Settings) -> Engines:
    """The school's two databases; binds the admin tables to its mapping (one per process)."""
    admin.use(settings.admin_db.mapping())
    return Engines(make_engine(settings.admin_db.url), make_engine(settings.state_db.url))


def directory(settings: Settings) -> dict[str, School]:
    return {peer.id: School(peer.id, peer.name, peer.email) for peer in settings.schools}


class Daemon:
    """One school's adapter: capture, relay and receiver, until stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        engines_: Engines | None = None,
        clock: Callable[[], datetime] = utcnow,
        admin_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.school = settings.school.id
        admin.use(settings.admin_db.mapping())
        self.engines = engines_ or engines(settings)
        self.clock = clock
        self.admin_clock = admin_clock or admin_clock_of(settings)
        sync_lock = threading.Lock()
        self.capture = Capture(
            self.engines.admin,
            self.engines.state,
            self.school,
            overlap=timedelta(seconds=settings.capture.overlap),
            sync_lock=sync_lock,
            admin_clock=self.admin_clock,
            timezone=settings.admin_db.zone,
        )
        self.applier = Applier(
            self.engines.admin,
            self.engines.state,
            self.school,
            directory(settings),
            sync_lock=sync_lock,
        )
        self.advancer = Advancer(
            self.engines.admin, self.engines.state, self.school, sync_lock=sync_lock
        )
        self.places = PlaceAllocator(self.engines.admin, self.engines.state, self.school)
        self.offers = offers.OfferPublisher(self.engines.admin, self.engines.state, self.school)
        self.topology = broker.topology(
            settings.broker.network, self.school, delivery_limit=settings.broker.delivery_limit
        )
        self._relay_wake = asyncio.Event()
        self._bound: set[CourseRef] = set()
        self._joined: set[CourseRef] = set()
        self.ready = asyncio.Event()
        self.lease = Lease(
            self.engines.state,
            self.school,
            timeout=timedelta(seconds=settings.health.heartbeat_timeout),
        )
        self.health = Health(
            max_poll_age=settings.health.max_poll_age,
            started_at=clock(),
            stuck_after=max(30.0, settings.health.heartbeat_timeout),
        )
        self._checks: dict[str, asyncio.Future[str | None]] = {}
        self._failing: dict[str, str] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then close. Work cut short is done again: unacknowledged
        messages are redelivered, and unconfirmed outbox rows published again. A broker
        restart is ridden through; stopping takes a few seconds at most, broker or not.

        Refuses to start (`ConfigError`, `broker.BrokerSetupError`) without a broker user per
        school, unless insecure, and on a broker not provisioned for this school; refuses
        (`heartbeat.SchoolHeldError`) while another daemon of the school runs."""
        self.settings.check_broker_users()
        migrate_state(self.engines.state)
        previous = await asyncio.to_thread(self.lease.acquire, self.clock())
        if previous is not None:
            log.warning(
                "daemon.taken_over",
                school=self.school,
                previous_pid=previous.pid,
                previous_host=previous.host,
                hint="the daemon before did not stop cleanly (killed, or its host went down)",
            )
        server = None
        try:
            if self.settings.metrics.port is not None:
                server = serve_http(
                    self.settings.metrics.host, self.settings.metrics.port, self.health, self.clock
                )
            await self._run(stop)
        finally:
            systemd.notify("STOPPING=1")
            if server is not None:
                await asyncio.to_thread(server.shutdown)
                server.server_close()
            try:
                await asyncio.to_thread(self.lease.release, self.clock())
            except Exception as error:  # the state DB is gone: the heartbeat expires instead
                log.warning("daemon.release_failed", school=self.school, error=error_text(error))

    async def _run(self, stop: asyncio.Event) -> None:
        connection = await broker.connect(self.settings.broker.url, name=f"vhs-sync {self.school}")
        consume_channel: AbstractChannel | None = None
        try:
            publish_channel = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            consume_channel = await connection.channel()
            probe_channel = await connection.channel()
            await consume_channel.set_qos(prefetch_count=self.settings.broker.prefetch)
            declared = await broker.declare(
                publish_channel, self.topology, insecure=self.settings.broker.insecure
            )
            self._queue = await consume_channel.get_queue(self.topology.queue.name)
            self._exchange = declared.exchange
            try:
                for key in routes.school_bindings(self.school):
                    await self._queue.bind(self._exchange, key)
                await self._join_courses(everything=True)
            except ChannelAccessRefused as refused:
                raise broker.BrokerSetupError(
                    f"the broker refused this school's user a binding ({refused}): provision "
                    "the network again with `vhs-sync broker provision`"
                ) from refused
            relay = OutboxRelay(
                self.engines.state,
                declared.exchange,
                school=self.school,
                user_id=self.settings.broker_user,
                batch_size=self.settings.broker.batch_size,
                events_per_message=self.settings.broker.events_per_message,
            )
            receiver = Receiver(
                self._queue,
                declared.dead_letters,
                self.applier,
                school=self.school,
                broker_users={
                    self.school: self.settings.broker_user,
                    **{peer.id: peer.broker_user for peer in self.settings.schools},
                },
                handlers={
                    CourseSyncRequested: self._answer_sync_request,
                    CourseSettingsChanged: self._apply_settings,
                    PlaceOffered: self._accept_place,
                    PlaceRequested: self._answer_place_request,
                    DigestRequested: self._answer_digest_request,
                    CourseOffered: self._receive_offer,
                    CourseLeft: self._record_leaver,
                },
                replies=declared.exchange,
                batch_size=self.settings.broker.batch_size,
                own_user=self.settings.broker_user,
                max_message_bytes=self.settings.broker.max_message_bytes,
                clock=self.clock,
                admin_clock=self.admin_clock,
            )
            metrics.start_series(self.school)
            self.health.broker_connected = connection.connected.is_set
            self.health.consuming = lambda: receiver.consuming
            log.info(
                "adapter.started",
                school=self.school,
                broker=broker.safe_url(self.settings.broker.url),
                queue=self.topology.queue.name,
            )
            tasks = [
                asyncio.create_task(self._capture_loop(), name="capture"),
                asyncio.create_task(self._join_loop(), name="join"),
                asyncio.create_task(self._relay_loop(relay), name="relay"),
                asyncio.create_task(self._reconcile_loop(), name="reconcile"),
                asyncio.create_task(self._supervised("receiver", receiver.run), name="receiver"),
                asyncio.create_task(self._health_loop(probe_channel), name="health"),
            ]
            self.ready.set()
            systemd.notify("READY=1")
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in [stopper, *tasks]:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for task in done:
                if task is not stopper and not task.cancelled() and (error := task.exception()):
                    raise error
        finally:
            await self._close(connection, consume_channel)
            log.info("adapter.stopped", school=self.school)

    async def _close(
        self, connection: AbstractRobustConnection, channel: AbstractChannel | None
    ) -> None:
        """Close the consuming channel, then the connection, each within CLOSE_TIMEOUT."""
        if channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), CLOSE_TIMEOUT)
        try:
            await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
        except Exception as error:  # the broker is gone: nothing of ours is left to close
            log.warning("broker.close_failed", school=self.school, error=error_text(error))

    async def _supervised(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` until cancelled. When it dies because the broker went away, it is run
        again (after a pause that grows with each failure in a row) once the robust
        connection is back; any other error ends the daemon."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await work()
                return
            except Exception as error:
                if not broker.connection_lost(error):
                    raise
                failures = 1 if time.monotonic() - started > 60 else failures + 1
                log.error("task.failed", school=self.school, task=name, error=error_text(error))
            await asyncio.sleep(backoff(0.5, failures, 10))

    async def _join_courses(self, *, everything: bool = False) -> None:
        """Bind the queue for shared courses this school subscribes to, and ask the network
        for the enrollments of courses it sees for the first time (V1).

        The queue is bound before the sync request is even written: once joined, the course's
        changes travel on its anonymised route, and one published before the binding reached
        nobody (and is not retried, nobody having subscribed); the answers themselves travel
        on this school's own answer route, bound at start. A course found after the shared
        courses were read is joined at the next call. `everything` is the first call, at
        start. A call that finds no course it has not met costs one read of the shared
        courses (`Capture.shared_courses`), so the daemon makes one every `[capture]
        join_interval`: a course row that appears (or `vhs-sync subscribe`) is joined within
        that, without waiting for a full scan."""
        courses = list(await asyncio.to_thread(self.capture.shared_courses))
        current = set(courses)
        left = set()
        if everything:  # also those left while no daemon ran: the durable queue kept them
            left = await asyncio.to_thread(offers.left_unbound, self.engines.state, self.school)
        for course in (self._bound | left) - current:  # left (`vhs-sync unsubscribe`): unbind
            for key in routes.subscriber_bindings(course):
                await self._queue.unbind(self._exchange, key)
            self._bound.discard(course)
        for course in left:  # unbound, or subscribed again: no longer one this school left
            await asyncio.to_thread(offers.record_rejoined, self.engines.state, course, self.school)
        self._joined &= current  # a course left and subscribed again is joined again
        unseen = [course for course in courses if course not in self._joined]
        if not unseen and not everything:
            return
        for course in unseen:
            if course in self._bound or course.role_of(self.school) is Role.MASTER:
                continue
            for key in routes.subscriber_bindings(course):
                await self._queue.bind(self._exchange, key)
            self._bound.add(course)
        new = await asyncio.to_thread(self.capture.join_new_courses, self.clock(), unseen)
        self._joined.update(unseen)
        if new:
            self._relay_wake.set()

    async def _join_loop(self) -> None:
        """Look for newly shared courses every `[capture] join_interval` and join them."""
        interval = self.settings.capture.join_interval
        failures = 0
        while True:
            try:
                await self._join_courses()
                failures = 0
            except Exception as error:
                failures += 1
                log.error("course.join_failed", school=self.school, error=error_text(error))
            await asyncio.sleep(backoff(interval, failures, 30))

    async def _answer_sync_request(self, request: CourseSyncRequested) -> None:
        course = course_ref(request.data.course)
        await asyncio.to_thread(
            offers.record_rejoined, self.engines.state, course, request.data.requested_by
        )
        await asyncio.to_thread(
            self.capture.resend_course, course, request.data.requested_by, self.clock()
        )
        if course.role_of(self.school) is Role.MASTER:
            await asyncio.to_thread(
                self.capture.publish_course_settings, self.clock(), resend=course
            )
        self._relay_wake.set()

    async def _answer_digest_request(self, request: DigestRequested) -> DigestAnswered:
        return await asyncio.to_thread(
            reconcile.answer_digest,
            self.engines.admin,
            self.engines.state,
            self.school,
            request,
            self.clock(),
        )

    async def _reconcile_loop(self) -> None:
        """Reconcile every shared course each `[reconcile] interval`; drift is logged and
        counted (`vhs_sync_drift`), and repaired when `[reconcile] repair` says so."""
        every = self.settings.reconcile.interval
        if not every:
            return
        while True:
            await asyncio.sleep(every)
            try:
                reports = await reconcile.reconcile(
                    self.settings,
                    self.engines.admin,
                    self.engines.state,
                    repair=self.settings.reconcile.repair,
                    wait=self.settings.reconcile.wait,
                    now=self.clock(),
                )
            except Exception as error:  # the next round tries again
                log.error("reconcile.failed", school=self.school, error=error_text(error))
                continue
            totals = dict.fromkeys(metrics.DRIFT_KINDS, 0)
            for report in reports:
                for kind, count in report.counts().items():
                    totals[kind] = totals.get(kind, 0) + count
            for kind, count in totals.items():
                metrics.drift.labels(self.school, kind).set(count)
            if any(report.repair_requested for report in reports):
                self._relay_wake.set()

    async def _apply_settings(self, event: CourseSettingsChanged) -> None:
        await asyncio.to_thread(self.applier.apply_course_settings, event)

    async def _receive_offer(self, event: CourseOffered) -> None:
        await asyncio.to_thread(
            offers.receive_offer,
            self.engines.admin,
            self.engines.state,
            self.school,
            event,
            self.clock(),
        )

    async def _record_leaver(self, event: CourseLeft) -> None:
        await asyncio.to_thread(
            offers.record_leaver, self.engines.state, self.school, event, self.clock()
        )

    async def _answer_place_request(self, request: PlaceRequested) -> PlaceAnswered:
        return await asyncio.to_thread(self.places.answer, request, self.clock())

    async def _accept_place(self, offer: PlaceOffered) -> None:
        await asyncio.to_thread(
            accept_place_offer,
            self.engines.admin,
            self.engines.state,
            self.school,
            offer,
            self.admin_clock(),
        )

    async def _capture_loop(self) -> None:
        interval = self.settings.capture.poll_interval
        scan_every = self.settings.capture.full_scan_interval
        last_scan = time.monotonic()
        failures = 0
        all_offers = True  # at start and at each full scan: every offer again, for late schools
        while True:
            try:
                await asyncio.to_thread(self.applier.ensure_recovered)
                if time.monotonic() - last_scan >= scan_every:
                    result = await asyncio.to_thread(self.capture.full_scan, self.clock())
                    last_scan = time.monotonic()
                    all_offers = True
                else:
                    result = await asyncio.to_thread(self.capture.poll, self.clock())
                result.outbox_rows += await asyncio.to_thread(
                    self.offers.publish, self.clock(), everything=all_offers
                )
                all_offers = False
                if result.outbox_rows:
                    self._relay_wake.set()  # publish before anything else is looked at
                if await asyncio.to_thread(self.advancer.advance, self.clock(), self.admin_clock()):
                    self._relay_wake.set()
                failures = 0
                self.health.last_poll_at, self.health.last_poll_error = self.clock(), None
                metrics.last_poll_success.labels(self.school).set(time.time())
            except Exception as error:
                failures += 1
                self.health.last_poll_error = error_text(error)
                metrics.capture_failures.labels(self.school).inc()
                log.error("capture.failed", school=self.school, error=error_text(error))
                await asyncio.sleep(backoff(interval, failures, 30))
                continue
            if result.published or result.deleted:
                metrics.captured.labels(self.school).inc(result.published)
                metrics.hard_deletes.labels(self.school).inc(result.deleted)
            if result.foreign_edits:
                metrics.foreign_edits.labels(self.school).inc(result.foreign_edits)
            if result.outbox_rows:
                self._relay_wake.set()
            await asyncio.sleep(interval)

    async def _relay_loop(self, relay: OutboxRelay) -> None:
        failures = 0
        while True:
            self._relay_wake.clear()
            try:
                result = await relay.relay_once(self.clock())
                failures = 0 if not result.failed else failures + 1
            except Exception as error:
                failures += 1
                log.error("outbox.relay_failed", school=self.school, error=error_text(error))
                result = None
            if failures:
                await asyncio.sleep(backoff(0.5, failures, 10))
            elif result is None or not result.sent:
                # Not `wait_for`, which in Python 3.11 can lose the cancellation at stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._relay_wake.wait()

    # The checks wait with `asyncio.timeout`, not `wait_for`: Python 3.11's `wait_for` loses a
    # cancellation that comes as the awaited thread finishes, and the daemon would not stop.
    async def _health_loop(self, probe: AbstractRobustChannel) -> None:
        """Every `[health] interval`: the heartbeat (which also tells whether the state DB
        takes writes), a ping of the admin DB, the depths of the queue and the DLQ, the
        metrics of them, and systemd's watchdog. A check that hangs holds up the loop once:
        it fails after `timeout`, and at once until it has returned. Ends the daemon
        (`SchoolHeldError`) when another daemon has taken the school."""
        interval = self.settings.health.interval
        # The checks run side by side, each within half the heartbeat's timeout, so that a
        # round takes less than the timeout (interval is at most a third of it) even while
        # the admin DB and the broker hang: the school is never taken from a daemon that runs.
        timeout = min(max(5 * interval, 5.0), self.settings.health.heartbeat_timeout / 2)
        health = self.health
        while True:
            health.tick()
            beat = functools.partial(
                self.lease.beat, self.clock(), health.last_poll_at, health.last_poll_error
            )
            ping = functools.partial(ping_admin_db, self.engines.admin)
            health.state_db_error, health.admin_db_error, _ = await asyncio.gather(
                self._bounded("state_db", beat, timeout),
                self._bounded("admin_db", ping, timeout),
                self._sample_queues(probe, timeout),
            )
            failing = health.failing(self.clock())
            self._log_changes(failing)
            for gauge, up in (
                (metrics.broker_connected, health.broker_connected()),
                (metrics.consumer_active, health.consuming()),
                (metrics.state_db_up, health.state_db_error is None),
                (metrics.admin_db_up, health.admin_db_error is None),
                (metrics.ready, not failing),
            ):
                gauge.labels(self.school).set(1 if up else 0)
            systemd.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _sample_queues(self, probe: AbstractRobustChannel, within: float) -> None:
        """The depths of the school's queue and DLQ, by passive declares on a channel of
        their own (one that fails closes its channel, never the consumer's)."""
        health = self.health
        if not health.broker_connected():
            health.broker_error, health.dead_letters = "not connected to the broker", None
            return
        try:
            async with asyncio.timeout(within):
                queue, dlq = [
                    await probe.declare_queue(spec.name, passive=True, robust=False)
                    for spec in (self.topology.queue, self.topology.dlq)
                ]
        except Exception as error:
            health.broker_error, health.dead_letters = error_text(error), None
            return
        health.queue_messages = queue.declaration_result.message_count
        health.dead_letters = dlq.declaration_result.message_count
        health.broker_error = None
        metrics.queue_depth.labels(self.school).set(health.queue_messages or 0)
        metrics.dlq_depth.labels(self.school).set(health.dead_letters or 0)

    def _log_changes(self, failing: dict[str, str]) -> None:
        """A line when a readiness check starts failing, and one when it passes again (from
        the second round on: the first one sees a daemon still starting)."""
        if self._failing is not None:
            for check in sorted(failing.keys() - self._failing.keys()):
                log.warning(
                    "health.check_failed", school=self.school, check=check, reason=failing[check]
                )
            for check in sorted(self._failing.keys() - failing.keys()):
                log.info("health.check_passed", school=self.school, check=check)
        self._failing = failing

    async def _bounded(self, name: str, check: Callable[[], None], within: float) -> str | None:
        """Run `check` in a thread: None when it passed, else why it failed. While a check
        that took too long still runs, it is not started again, and fails at once."""
        running = self._checks.get(name)
        if running is not None and not running.done():
            return f"no answer within {within:g} s"
        running = self._checks[name] = asyncio.ensure_future(asyncio.to_thread(_described, check))
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(running)
        except TimeoutError:
            return f"no answer within {within:g} s"


def _described(check: Callable[[], None]) -> str | None:
    """None when `check` passes, else its error as `error_text` describes it. Losing the
    school to another daemon is no failed check: it ends the daemon."""
    try:
        check()
    except SchoolHeldError:
        raise
    except Exception as error:
        return error_text(error)
    return None
