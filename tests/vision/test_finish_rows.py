"""What a finished job leaves in the database: the analysis row, the AI operation log, the delivery state.

The finish writes with plain statements, not the ORM's unit of work (CPU per job); these are the rows
the ORM wrote, column by column (defaults included), for a calibrated box through a delivery round.
"""

from __future__ import annotations

from sqlalchemy import delete, event, select

from cloud.models import AIOperation, Analysis, Capture, DeliveryEvent, Device, MailboxState
from mailcam.mailboxes import Item, Mailbox, Wake

BOX = Mailbox(721)
LETTERS = [Item("letter", 1), Item("letter", 2)]
MORE = [*LETTERS, Item("flyer", 7)]


def shoot(env, items, wake: int) -> str:
    return env.shoot(BOX, items, wake)


def test_the_rows_of_a_delivery_round(make_env):
    env = make_env()
    env.calibrate(shoot(env, [], 1))
    ids = [shoot(env, items, wake) for wake, items in [(2, []), (3, LETTERS), (4, LETTERS), (6, MORE), (8, [])]]
    with env.ctx.sessions() as session:
        captures = {c.id: c for c in session.scalars(select(Capture))}
        analyses = {captures[a.capture_pk].capture_id: a for a in session.scalars(select(Analysis))}
        operations = list(session.scalars(select(AIOperation).order_by(AIOperation.id)))
        device_id = session.scalar(select(Device.id).where(Device.serial == env.device.serial))
        state = session.get(MailboxState, device_id)
        events = list(session.scalars(select(DeliveryEvent).order_by(DeliveryEvent.id)))
    assert [analyses[c].delivery for c in ids] == [None, "arrived", None, "more", "collected"]
    assert [analyses[c].mail_detected for c in ids] == [False, True, True, True, False]
    for capture_id in ids:
        analysis = analyses[capture_id]
        assert analysis.status.value == "done"
        assert (analysis.provider, analysis.model, analysis.source, analysis.error) == (
            "offline", "offline-v2", "model", None)
        assert analysis.phash is not None and len(analysis.phash) == 16
        assert analysis.updated_at == analysis.created_at  # the manual clock stands still during a run
        assert analysis.image_quality == "ok" and analysis.package_damage == "none"
        assert sum(analysis.categories.values()) == len(analysis.items)
    # The verdicts as the ORM finish stored them (the offline analyser's words for this box).
    none = {"letter": 0, "package": 0, "magazine": 0, "flyer": 0, "postcard": 0}
    parcel = [{"type": "package", "description": "package (offline estimate)"}]
    more = [{"type": "letter", "description": "letter (offline estimate)"},
            {"type": "flyer", "description": "flyer (offline estimate)"}]
    assert [(a.confidence, a.description, a.items, a.categories, a.package_present, a.package_damage_confidence)
            for a in (analyses[c] for c in ids)] == [
        (0.97, "The mailbox looks empty.", [], none, False, 0.0),
        (0.97, "Mail in the mailbox: 1 package.", parcel, {**none, "package": 1}, True, 0.0),
        (0.97, "Mail in the mailbox: 1 package.", parcel, {**none, "package": 1}, True, 0.0),
        (0.97, "Mail in the mailbox: 1 letter, 1 flyer.", more, {**none, "letter": 1, "flyer": 1}, False, 0.0),
        (0.97, "The mailbox looks empty.", [], none, False, 0.0),
    ]
    # One logged operation per job, with the columns' defaults where the job gave no value.
    assert len(operations) == 6
    for op in operations:
        capture = captures[op.capture_pk]
        assert (op.kind, op.provider, op.model, op.detail, op.status, op.error) == (
            "call", "offline", "offline-v2", None, "ok", None)
        assert (op.prompt_tokens, op.completion_tokens, op.cost_usd, op.latency_ms) == (0, 0, 0.0, 0)
        assert op.device_id == capture.device_id and op.job_id is not None
        assert op.month == op.created_at.strftime("%Y-%m")
        assert op.created_at == analyses[capture.capture_id].updated_at
    by_id = {c.capture_id: c for c in captures.values()}
    arrived, more, collected = (by_id[ids[i]] for i in (1, 3, 4))
    none = {"letter": 0, "package": 0, "magazine": 0, "flyer": 0, "postcard": 0}
    assert [(e.kind, e.capture_pk, e.at, e.categories, e.package_present) for e in events] == [
        ("arrived", arrived.id, arrived.taken_at, {**none, "package": 1}, True),
        ("more", more.id, more.taken_at, {**none, "letter": 1, "flyer": 1}, False),
        ("collected", collected.id, collected.taken_at, none, False),
    ]
    assert state is not None
    assert (state.state, state.since, state.capture_pk, state.taken_at, state.categories, state.package_present) == (
        "empty", collected.taken_at, collected.id, collected.taken_at, None, False)
    assert state.updated_at == analyses[ids[-1]].updated_at and state.calibrated_at is not None
    assert env.sink.kinds().count("analysis_completed") == 6
    assert [e.data["transition"] for e in env.sink.events if e.kind == "mail_delivery"] == [
        "arrived", "more", "collected"]


def test_a_capture_whose_analysis_row_is_gone_gets_one(make_env):
    """Ingest makes the analysis row with the capture; should it be missing, the finish inserts it."""
    env = make_env()
    capture_id = env.capture(BOX.frame(LETTERS, Wake(1)))
    with env.ctx.sessions() as session, session.begin():
        pk = session.scalar(select(Capture.id).where(Capture.capture_id == capture_id))
        session.execute(delete(Analysis).where(Analysis.capture_pk == pk))
    assert env.run() == 1
    analysis = env.analysis(capture_id)
    assert analysis["status"] == "done" and analysis["mail_detected"] is None  # uncalibrated: no verdict
    assert env.sink.kinds().count("analysis_completed") == 1
    with env.ctx.sessions() as session:  # the box's first frame made its state row: empty, nothing applied
        state = session.scalar(select(MailboxState))
        assert state is not None and (state.state, state.capture_pk, state.taken_at, state.categories) == (
            "empty", None, None, None)
        assert state.calibration_requested_at is not None  # and the owner was asked, once, to calibrate
    assert env.sink.kinds().count("calibration_needed") == 1


def test_a_delivery_writes_its_analysis_row_once(make_env):
    """The box's state is worked out first, so the analysis row is written once with its transition
    (it was written a second time for the transition: a statement more on every delivery)."""
    env = make_env()
    env.calibrate(shoot(env, [], 1))
    writes: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE ANALYSES"):
            writes.append(statement)

    event.listen(env.ctx.engine, "before_cursor_execute", count)
    try:
        arrived = env.capture(BOX.frame(LETTERS, Wake(3)))
        writes.clear()  # ingest writes none; the job's claim marks the row running
        assert env.run() == 1
    finally:
        event.remove(env.ctx.engine, "before_cursor_execute", count)
    assert env.analysis(arrived)["delivery"] == "arrived"
    assert len(writes) == 2  # running (the claim), done with its transition (the finish)
