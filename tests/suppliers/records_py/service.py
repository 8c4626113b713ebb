"""carerecord.records.v1.RecordHostingService, implemented from records.proto alone."""

import hashlib
import inspect
import json
import time
import uuid

import grpc
from google.protobuf import any_pb2, timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from carerecord.common.v1 import common_pb2
from carerecord.records.v1 import records_pb2 as pb
from carerecord.records.v1 import records_pb2_grpc as pb_grpc

import validation as v
from store import Store
from tokens import BadToken, ExpiredToken, Tokens, query_hash

RESOURCE = "carerecord.records.v1.Record"
DOMAIN = "carerecord"
UPDATABLE = {"payload", "data_classes", "effective_time", "author", "authoring_organisation_ods_code", "source_system"}
CREATED, UPDATED, RETRACTED = common_pb2.CHANGE_TYPE_CREATED, common_pb2.CHANGE_TYPE_UPDATED, common_pb2.CHANGE_TYPE_RETRACTED
CURRENT, ENTERED_IN_ERROR = pb.RECORD_STATUS_CURRENT, pb.RECORD_STATUS_ENTERED_IN_ERROR
MAX_RESPONSE_BYTES = 3 * 1024 * 1024
HEARTBEAT_SECONDS = 30


# -- errors ------------------------------------------------------------------------------------


class RpcError(Exception):
    """An error status with google.rpc details, raised anywhere and sent by the handler wrapper."""

    def __init__(self, code, message, *details):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    def status(self):
        st = status_pb2.Status(code=self.code, message=self.message)
        for d in self.details:
            packed = any_pb2.Any()
            packed.Pack(d)
            st.details.append(packed)
        return rpc_status.to_status(st)


def invalid(violations):
    br = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations]
    )
    return RpcError(code_pb2.INVALID_ARGUMENT, "; ".join(f"{f}: {d}" for f, d in violations), br)


def not_found(record_id):
    info = error_details_pb2.ResourceInfo(resource_type=RESOURCE, resource_name=record_id)
    return RpcError(code_pb2.NOT_FOUND, f"no record {record_id}", info)


def etag_mismatch():
    info = error_details_pb2.ErrorInfo(reason="ETAG_MISMATCH", domain=DOMAIN)
    return RpcError(code_pb2.ABORTED, "the etag is not the latest version's: re-read, reapply, retry", info)


def precondition(kind, subject, description):
    pf = error_details_pb2.PreconditionFailure(
        violations=[error_details_pb2.PreconditionFailure.Violation(type=kind, subject=subject, description=description)]
    )
    return RpcError(code_pb2.FAILED_PRECONDITION, description, pf)


def request_id_reused(request_id):
    info = error_details_pb2.ErrorInfo(reason="REQUEST_ID_REUSED", domain=DOMAIN, metadata={"request_id": request_id})
    return RpcError(code_pb2.FAILED_PRECONDITION, "request_id already used with a different record", info)


def bad_token(field, err):
    if isinstance(err, ExpiredToken):
        kind = "RESUME_CURSOR_EXPIRED" if field == "resume_cursor" else "PAGE_TOKEN_EXPIRED"
        return precondition(kind, field, "the token is older than the server keeps tokens; start again")
    return invalid([(field, f"invalid: {err}")])


def rpc(method):
    """Sends RpcError as a status with details; anything else is INTERNAL without its text."""

    def unary(self, request, context):
        try:
            return method(self, request, context)
        except RpcError as e:
            context.abort_with_status(e.status())

    def streaming(self, request, context):
        try:
            yield from method(self, request, context)
        except RpcError as e:
            context.abort_with_status(e.status())

    wrapper = streaming if inspect.isgeneratorfunction(method) else unary
    wrapper.__name__ = method.__name__
    return wrapper


# -- conversions -------------------------------------------------------------------------------


def ts_us(ts) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def us_ts(us: int):
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def to_record(row, view=pb.RECORD_VIEW_FULL) -> pb.Record:
    r = pb.Record(
        record_id=row.record_id,
        patient_id=row.patient_id,
        resource_type=row.resource_type,
        content_type=row.content_type,
        content_hash=row.content_hash,
        payload_size=len(row.payload),
        data_classes=json.loads(row.data_classes),
        authoring_organisation_ods_code=row.ods,
        author=row.author,
        source_system=row.source_system,
        status=row.status,
        retraction_reason=row.retraction_reason,
        version=row.version,
        etag=row.etag,
        create_time=us_ts(row.create_us),
        update_time=us_ts(row.update_us),
        recorded_time=us_ts(row.recorded_us),
        modified_by=to_requester(row.requester),
    )
    if view != pb.RECORD_VIEW_METADATA:
        r.payload = bytes(row.payload)
    if row.effective_us is not None:
        r.effective_time.CopyFrom(us_ts(row.effective_us))
    return r


def to_requester(text) -> common_pb2.Requester:
    return common_pb2.Requester(**json.loads(text))


def requester_dict(req) -> dict:
    return {
        "user_id": req.user_id,
        "organisation_ods_code": req.organisation_ods_code,
        "role_code": req.role_code,
        "display_name": req.display_name,
    }


def fingerprint(record) -> str:
    """Identity of a create's input, to tell a retry from a reuse of its request_id."""
    fields = {
        "patient_id": record.patient_id.lower(),
        "resource_type": record.resource_type,
        "content_type": record.content_type,
        "payload": hashlib.sha256(record.payload).hexdigest(),
        "data_classes": sorted(set(record.data_classes)),
        "ods": record.authoring_organisation_ods_code.upper(),
        "author": record.author,
        "source_system": record.source_system,
        "effective": ts_us(record.effective_time) if record.HasField("effective_time") else None,
        "recorded": ts_us(record.recorded_time) if record.HasField("recorded_time") else None,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def page_size(value: int, field="page_size") -> int:
    if value < 0:
        raise invalid([(field, "must not be negative")])
    return 50 if value == 0 else min(value, 1000)


def period_us(period):
    start = ts_us(period.start) if period.HasField("start") else None
    end = ts_us(period.end) if period.HasField("end") else None
    return start, end


def period_violations(field, period):
    start, end = period_us(period)
    if start is not None and end is not None and start >= end:
        return [(field, "start must be before end")]
    return []


def in_period(us, period):
    if period is None:
        return True
    start, end = period
    if start is None and end is None:
        return True
    if us is None:
        return False
    return (start is None or us >= start) and (end is None or us < end)


# -- the service -------------------------------------------------------------------------------


class RecordHostingService(pb_grpc.RecordHostingServiceServicer):
    def __init__(self, store: Store, payload_limit: int, fhir_bases, allowed_types=None):
        self.store = store
        self.tokens = Tokens(store.secret)
        self.limit = payload_limit
        self.bases = list(fhir_bases)
        self.allow = allowed_types

    # ---- cursors of the feed: positions, valid for ever, usable with any filters

    def feed_cursor(self, seq: int) -> str:
        return self.tokens.issue("feed", "", expires=False, s=seq)

    def parse_feed_cursor(self, cursor: str) -> int:
        try:
            return self.tokens.verify("feed", "", cursor, expires=False)["s"]
        except BadToken as e:
            raise invalid([("after_cursor", f"invalid: {e}")])

    # ---- creates (CreateRecord and import items share this)

    def _create_violations(self, request_id, record, has_record, request_id_required):
        """Every validation problem of one create (CreateRecord or an import item)."""
        violations = v.uuid_violation("request_id", request_id, required=request_id_required)
        problems, _ = v.record_input_violations(record, has_record, self.limit, self.bases, self.allow)
        return violations + problems

    def _write_create(self, request_id, record, requester):
        """Writes one valid create inside the caller's lock and transaction.

        Returns (row, deduplicated); raises REQUEST_ID_REUSED."""
        fp = fingerprint(record)
        if request_id:
            known = self.store.request_id(request_id.lower())
            if known is not None:
                if known[0] != fp:
                    raise request_id_reused(request_id)
                return self.store.version(known[1], 1), True
        now = self.store.next_time_us(v.now_us())
        record_id = str(uuid.uuid4())
        row = {
            "record_id": record_id,
            "version": 1,
            "change_type": CREATED,
            "status": CURRENT,
            "content_type": record.content_type,
            "payload": bytes(record.payload),
            "content_hash": hashlib.sha256(record.payload).hexdigest(),
            "data_classes": sorted(set(record.data_classes)),
            "ods": record.authoring_organisation_ods_code.upper(),
            "author": record.author,
            "source_system": record.source_system,
            "effective_us": ts_us(record.effective_time) if record.HasField("effective_time") else None,
            "recorded_us": ts_us(record.recorded_time) if record.HasField("recorded_time") else now,
            "retraction_reason": "",
            "etag": etag_for(record_id, 1, now),
            "create_us": now,
            "update_us": now,
            "requester": requester_dict(requester),
        }
        seq = self.store.insert_version(row)
        self.store.insert_record(record_id, record.patient_id.lower(), record.resource_type, seq)
        if request_id:
            self.store.remember_request(request_id.lower(), fp, record_id)
        return self.store.version(record_id, 1), False

    @rpc
    def CreateRecord(self, request, context):
        violations = [] if request.HasField("requester") else [("requester", "required")]
        violations += self._create_violations(request.request_id, request.record, request.HasField("record"), True)
        if violations:
            raise invalid(violations)
        with self.store.transaction():
            row, _ = self._write_create(request.request_id, request.record, request.requester)
        self.store.notify()
        return pb.CreateRecordResponse(record=to_record(row))

    @rpc
    def GetRecord(self, request, context):
        violations = v.uuid_violation("record_id", request.record_id)
        if request.version < 0:
            violations.append(("version", "must not be negative"))
        if violations:
            raise invalid(violations)
        record_id = request.record_id.lower()
        with self.store.lock:
            row = self.store.version(record_id, request.version)
        if row is None:
            raise not_found(record_id)
        return pb.GetRecordResponse(record=to_record(row, request.view))

    # ---- updates and retractions

    def _latest(self, record_id, etag):
        """The record's latest version, which `etag` must name (callers hold a transaction)."""
        latest = self.store.version(record_id)
        if latest is None:
            raise not_found(record_id)
        if etag != latest.etag:
            raise etag_mismatch()
        return latest

    def _write_version(self, latest, changes, change_type, requester):
        now = self.store.next_time_us(v.now_us())
        row = {k: latest[k] for k in latest if k not in ("seq", "patient_id", "resource_type", "creation_seq")}
        row["data_classes"] = json.loads(latest["data_classes"])
        row.update(changes)
        row.update(
            version=latest.version + 1,
            change_type=change_type,
            update_us=now,
            etag=etag_for(latest.record_id, latest.version + 1, now),
            requester=requester_dict(requester),
        )
        self.store.insert_version(row)
        return self.store.version(latest.record_id)

    @rpc
    def UpdateRecord(self, request, context):
        record = request.record
        violations = []
        if not request.HasField("record"):
            violations.append(("record", "required"))
        else:
            violations += v.uuid_violation("record.record_id", record.record_id)
        if not request.etag:
            violations.append(("etag", "required"))
        if not request.HasField("requester"):
            violations.append(("requester", "required"))
        paths = list(request.update_mask.paths)
        if not paths or paths == ["*"]:
            paths = sorted(UPDATABLE)
        else:
            bad = [p for p in paths if p not in UPDATABLE]
            if bad:
                violations.append(("update_mask", f"not updatable: {', '.join(bad)}; allowed: {', '.join(sorted(UPDATABLE))}"))
        if not violations:
            if "payload" in paths:
                violations += v.content_violations(record, self.limit)
                _, problems = v.parse_payload(record.payload, self.limit)
                violations += problems
            violations += v.metadata_violations(record, paths)
        if violations:
            raise invalid(violations)
        record_id = record.record_id.lower()
        with self.store.transaction():
            latest = self._latest(record_id, request.etag)
            if latest.status == ENTERED_IN_ERROR:
                raise precondition("RECORD_STATUS", record_id, "the record is retracted; retracted records cannot be updated")
            stored = []
            if record.patient_id and record.patient_id.lower() != latest.patient_id:
                stored.append(("record.patient_id", "immutable: differs from the stored patient_id"))
            if record.resource_type and record.resource_type != latest.resource_type:
                stored.append(("record.resource_type", "immutable: differs from the stored resource_type"))
            if "payload" in paths:
                value, _ = v.parse_payload(record.payload, self.limit)
                stored += v.check_payload_against(value, latest.resource_type, latest.patient_id, self.bases)
            if stored:
                raise invalid(stored)
            changes = {}
            if "payload" in paths:
                changes.update(
                    payload=bytes(record.payload),
                    content_type=record.content_type,
                    content_hash=hashlib.sha256(record.payload).hexdigest(),
                )
            if "data_classes" in paths:
                changes["data_classes"] = sorted(set(record.data_classes))
            if "effective_time" in paths:
                changes["effective_us"] = ts_us(record.effective_time) if record.HasField("effective_time") else None
            if "author" in paths:
                changes["author"] = record.author
            if "authoring_organisation_ods_code" in paths:
                changes["ods"] = record.authoring_organisation_ods_code.upper()
            if "source_system" in paths:
                changes["source_system"] = record.source_system
            row = self._write_version(latest, changes, UPDATED, request.requester)
        self.store.notify()
        return pb.UpdateRecordResponse(record=to_record(row))

    @rpc
    def RetractRecord(self, request, context):
        violations = v.uuid_violation("record_id", request.record_id)
        if not request.etag:
            violations.append(("etag", "required"))
        if not request.reason.strip():
            violations.append(("reason", "required, not only white space"))
        elif len(request.reason) > 1024:
            violations.append(("reason", "at most 1024 characters"))
        if not request.HasField("requester"):
            violations.append(("requester", "required"))
        if violations:
            raise invalid(violations)
        record_id = request.record_id.lower()
        with self.store.transaction():
            latest = self._latest(record_id, request.etag)
            if latest.status == ENTERED_IN_ERROR:
                raise precondition("RECORD_STATUS", record_id, "the record is already retracted")
            changes = {"status": ENTERED_IN_ERROR, "retraction_reason": request.reason}
            row = self._write_version(latest, changes, RETRACTED, request.requester)
        self.store.notify()
        return pb.RetractRecordResponse(record=to_record(row))

    # ---- listings

    @rpc
    def ListRecordVersions(self, request, context):
        violations = v.uuid_violation("record_id", request.record_id)
        if violations:
            raise invalid(violations)
        size = page_size(request.page_size)
        record_id = request.record_id.lower()
        query = query_hash(record_id=record_id)
        with self.store.lock:
            latest = self.store.version(record_id)
            if latest is None:
                raise not_found(record_id)
            if request.page_token:
                try:
                    top = self.tokens.verify("versions", query, request.page_token)["p"]
                except (BadToken, ExpiredToken) as e:
                    raise bad_token("page_token", e)
            else:
                top = latest.version
            rows = self.store.versions_desc(record_id, top, size)
        out = pb.ListRecordVersionsResponse()
        for row in rows:
            out.versions.append(
                pb.RecordVersion(
                    record=to_record(row, request.view),
                    change_type=row.change_type,
                    requester=to_requester(row.requester),
                )
            )
        if rows and rows[-1].version > 1:
            out.next_page_token = self.tokens.issue("versions", query, p=rows[-1].version - 1)
        return out

    def _list_filter(self, request):
        violations = v.uuid_violation("patient_id", request.patient_id)
        violations += v.resource_type_filter_violations("resource_types", request.resource_types)
        violations += v.data_class_violations("data_classes", request.data_classes)
        violations += v.data_class_violations("excluded_data_classes", request.excluded_data_classes)
        if request.HasField("effective_time"):
            violations += period_violations("effective_time", request.effective_time)
        violations += v.token_filter_violations("codes", request.codes)
        violations += v.token_filter_violations("categories", request.categories)
        violations += v.token_filter_violations("statuses", request.statuses, v.MAX_STATUSES)
        if (
            request.HasField("updated_since")
            and request.HasField("updated_before")
            and ts_us(request.updated_since) >= ts_us(request.updated_before)
        ):
            violations.append(("updated_before", "must be after updated_since"))
        return violations

    @rpc
    def ListRecords(self, request, context):
        violations = self._list_filter(request)
        if violations:
            raise invalid(violations)
        size = page_size(request.page_size)
        patient_id = request.patient_id.lower()
        order = request.order or pb.RECORD_ORDER_CREATION
        effective = period_us(request.effective_time) if request.HasField("effective_time") else None
        if effective == (None, None):
            effective = None
        since = ts_us(request.updated_since) if request.HasField("updated_since") else None
        before = ts_us(request.updated_before) if request.HasField("updated_before") else None
        codes, categories, statuses = list(request.codes), list(request.categories), set(request.statuses)
        query = query_hash(
            codes=sorted(set(codes)),
            categories=sorted(set(categories)),
            statuses=sorted(statuses),
            before=before,
            patient_id=patient_id,
            resource_types=list(request.resource_types),
            data_classes=sorted(request.data_classes),
            excluded=sorted(request.excluded_data_classes),
            effective=effective,
            since=since,
            include_retracted=request.include_retracted,
            order=order,
        )
        with self.store.lock:
            if request.page_token:
                try:
                    body = self.tokens.verify("list", query, request.page_token)
                except (BadToken, ExpiredToken) as e:
                    raise bad_token("page_token", e)
                snapshot, position = body["s"], body["p"]
            else:
                snapshot, position = self.store.head(), None
            rows = self.store.patient_as_of(patient_id, snapshot)
        types, classes, excluded = set(request.resource_types), set(request.data_classes), set(request.excluded_data_classes)

        def matches_terms(row):
            if not (codes or categories or statuses):
                return True
            row_codes, row_categories, row_status = v.payload_terms(bytes(row.payload))
            return (
                (not codes or any(v.token_matches(t, row_codes) for t in codes))
                and (not categories or any(v.token_matches(t, row_categories) for t in categories))
                and (not statuses or row_status in statuses)
            )

        def matches(row):
            labels = set(json.loads(row.data_classes))
            return (
                (request.include_retracted or row.status == CURRENT)
                and (not types or row.resource_type in types)
                and (not classes or labels & classes)
                and not labels & excluded
                and in_period(row.effective_us, effective)
                and (since is None or row.update_us >= since)
                and (before is None or row.update_us < before)
                and matches_terms(row)
            )

        rows = [r for r in rows if matches(r)]
        if order == pb.RECORD_ORDER_EFFECTIVE_TIME_DESCENDING:
            key = lambda r: (0 if r.effective_us is not None else 1, -(r.effective_us or 0), -r.creation_seq)
        else:
            key = lambda r: (r.creation_seq,)
        rows.sort(key=key)
        if position is not None:
            position = tuple(position)
            rows = [r for r in rows if key(r) > position]
        page, budget = [], MAX_RESPONSE_BYTES
        for row in rows[:size]:
            budget -= len(row.payload) + 512
            if page and budget < 0:
                break
            page.append(row)
        out = pb.ListRecordsResponse(
            records=[to_record(r, request.view) for r in page],
            watch_cursor=self.feed_cursor(snapshot),
        )
        if len(page) < len(rows):
            out.next_page_token = self.tokens.issue("list", query, s=snapshot, p=list(key(page[-1])))
        return out

    # ---- export

    @rpc
    def ExportRecords(self, request, context):
        violations = []
        scope = request.WhichOneof("scope")
        patients, window = None, None
        if scope is None:
            violations.append(("scope", "set patients or updated_between"))
        elif scope == "patients":
            ids = list(request.patients.patient_ids)
            if not ids:
                violations.append(("patients.patient_ids", "1 to 1000 patient ids"))
            elif len(ids) > 1000:
                violations.append(("patients.patient_ids", f"at most 1000 patient ids, got {len(ids)}"))
            else:
                for i, p in enumerate(ids):
                    violations += v.uuid_violation(f"patients.patient_ids[{i}]", p)
            patients = sorted({p.lower() for p in ids})
        else:
            violations += period_violations("updated_between", request.updated_between)
            window = period_us(request.updated_between)
        violations += v.resource_type_filter_violations("resource_types", request.resource_types)
        violations += v.data_class_violations("excluded_data_classes", request.excluded_data_classes)
        if violations:
            raise invalid(violations)
        view = request.view or pb.RECORD_VIEW_FULL
        query = query_hash(
            patients=patients,
            window=window,
            resource_types=list(request.resource_types),
            excluded=sorted(request.excluded_data_classes),
            include_retracted=request.include_retracted,
            view=view,
        )
        if request.resume_cursor:
            try:
                body = self.tokens.verify("export", query, request.resume_cursor)
            except (BadToken, ExpiredToken) as e:
                raise bad_token("resume_cursor", e)
            snapshot, position = body["s"], body["p"]
        else:
            with self.store.lock:
                snapshot, position = self.store.head(), 0
        watch_cursor = self.feed_cursor(snapshot)
        types, excluded = set(request.resource_types), set(request.excluded_data_classes)

        def matches(row):
            return (
                (request.include_retracted or row.status == CURRENT)
                and (not types or row.resource_type in types)
                and not set(json.loads(row.data_classes)) & excluded
                and (window is None or in_period(row.update_us, window))
            )

        batch, size, sent_any = [], 0, False
        while True:
            with self.store.lock:
                rows = self.store.export_chunk(patients, snapshot, position, 500)
            if not rows:
                break
            for row in rows:
                position = row.creation_seq
                if not matches(row):
                    continue
                record = to_record(row, view)
                if batch and (len(batch) == 100 or size + record.ByteSize() > MAX_RESPONSE_BYTES):
                    yield pb.ExportRecordsResponse(records=batch, resume_cursor=cursor, watch_cursor=watch_cursor)
                    sent_any, batch, size = True, [], 0
                batch.append(record)
                size += record.ByteSize()
                cursor = self.tokens.issue("export", query, s=snapshot, p=position)
        if batch or not sent_any:
            cursor = self.tokens.issue("export", query, s=snapshot, p=position)
            yield pb.ExportRecordsResponse(records=batch, resume_cursor=cursor, watch_cursor=watch_cursor)

    # ---- change feed

    @rpc
    def WatchRecordChanges(self, request, context):
        violations = []
        if request.after_cursor and request.start_at_head:
            violations.append(("after_cursor", "must be empty when start_at_head is set"))
        if len(request.patient_ids) > 1000:
            violations.append(("patient_ids", f"at most 1000 patient ids, got {len(request.patient_ids)}"))
        else:
            for i, p in enumerate(request.patient_ids):
                violations += v.uuid_violation(f"patient_ids[{i}]", p)
        violations += v.resource_type_filter_violations("resource_types", request.resource_types)
        if violations:
            raise invalid(violations)
        with self.store.lock:
            head = self.store.head()
        if request.start_at_head:
            position = head
        elif request.after_cursor:
            position = self.parse_feed_cursor(request.after_cursor)
            if position > head:
                raise precondition("CURSOR_AHEAD_OF_FEED", "after_cursor", "the cursor is beyond the newest event; resynchronise")
        else:
            position = 0
        patients = {p.lower() for p in request.patient_ids}
        types = set(request.resource_types)

        def matches(row):
            return (not patients or row.patient_id in patients) and (not types or row.resource_type in types)

        def change(row):
            return pb.RecordChange(
                sequence=row.seq,
                cursor=self.feed_cursor(row.seq),
                change_type=row.change_type,
                record_id=row.record_id,
                patient_id=row.patient_id,
                version=row.version,
                change_time=us_ts(row.update_us),
                requester=to_requester(row.requester),
                record=to_record(row, request.view),
            )

        def drain(upto, caught_up):
            """Messages for events after position up to `upto`; skips non-matching events."""
            nonlocal position
            while position < upto and context.is_active():
                with self.store.lock:
                    rows = self.store.feed(position, upto, 500)
                if not rows:
                    position = upto
                    break
                batch, size = [], 0
                for row in rows:
                    if matches(row):
                        c = change(row)
                        if batch and (len(batch) == 100 or size + c.ByteSize() > MAX_RESPONSE_BYTES):
                            yield pb.WatchRecordChangesResponse(changes=batch, cursor=batch[-1].cursor, caught_up=caught_up)
                            batch, size = [], 0
                        batch.append(c)
                        size += c.ByteSize()
                    position = row.seq
                if batch:
                    yield pb.WatchRecordChangesResponse(changes=batch, cursor=self.feed_cursor(position), caught_up=caught_up)
                elif not caught_up:
                    yield pb.WatchRecordChangesResponse(cursor=self.feed_cursor(position), caught_up=False)

        yield from drain(head, caught_up=False)
        position = max(position, head)
        yield pb.WatchRecordChangesResponse(cursor=self.feed_cursor(position), caught_up=True)
        last_sent = time.monotonic()
        while context.is_active():
            with self.store.changed:
                with self.store.lock:
                    newest = self.store.head()
                if newest <= position:
                    # Short waits so a cancelled stream frees its thread quickly.
                    self.store.changed.wait(timeout=1.0)
            with self.store.lock:
                newest = self.store.head()
            if newest > position:
                yield from drain(newest, caught_up=True)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                yield pb.WatchRecordChangesResponse(cursor=self.feed_cursor(position), caught_up=True)
                last_sent = time.monotonic()

    # ---- import

    @rpc
    def ImportRecords(self, request_iterator, context):
        response = pb.ImportRecordsResponse()
        requester, return_ids, index, first = None, False, 0, True
        for message in request_iterator:
            if first:
                if not message.HasField("requester"):
                    raise invalid([("requester", "required in the first message")])
                requester, return_ids, first = message.requester, message.return_record_ids, False
            if len(message.items) > 1000:
                raise invalid([("items", f"at most 1000 items per message, got {len(message.items)}")])
            with self.store.transaction():
                for item in message.items:
                    self._import_item(item, index, requester, return_ids, response)
                    index += 1
            self.store.notify()
        if first:
            raise invalid([("requester", "the stream has no message")])
        return response

    def _import_item(self, item, index, requester, return_ids, response):
        violations = self._create_violations(item.request_id, item.record, item.HasField("record"), False)
        try:
            if violations:
                raise invalid(violations)
            row, deduplicated = self._write_create(item.request_id, item.record, requester)
        except RpcError as e:
            rejection = pb.ImportRejection(index=index, request_id=item.request_id, message=e.message)
            if e.code == code_pb2.INVALID_ARGUMENT:
                rejection.reason = pb.IMPORT_REJECTION_REASON_INVALID_RECORD
                for f in e.details[0].field_violations:
                    rejection.field_violations.append(common_pb2.FieldViolation(field=f.field, description=f.description))
            else:
                rejection.reason = pb.IMPORT_REJECTION_REASON_REQUEST_ID_REUSED
            response.rejected_count += 1
            if len(response.rejections) < 1000:
                response.rejections.append(rejection)
            else:
                response.rejections_truncated = True
            return
        response.accepted_count += 1
        if deduplicated:
            response.deduplicated_count += 1
        if return_ids:
            if len(response.accepted_records) < 100_000:
                response.accepted_records.append(
                    pb.ImportedRecord(index=index, record_id=row.record_id, deduplicated=deduplicated)
                )
            else:
                response.accepted_records_truncated = True


def etag_for(record_id: str, version: int, update_us: int) -> str:
    return hashlib.sha256(f"{record_id}/{version}/{update_us}".encode()).hexdigest()[:20]
