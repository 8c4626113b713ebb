"""The FHIR gateway as fhirpy (a FHIR client nobody on this project wrote) uses it, with every
response checked by fhir.resources' R4 models.

Run by tests/e2e/fhir_peers.rs against a sandbox platform, with FHIR_BASE (the gateway), FHIR_TOKEN
(a clinician's token that may read and write), PATIENT_ID and NHS_NUMBER (a registered patient with
no records yet). Exits non-zero, saying what went wrong, on the first failed expectation or on any
response fhir.resources refuses as R4.
"""

import json
import os
import sys
import time
import uuid

import fhir.resources
import requests
from fhir.resources import construct_fhir_element
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import (
    MultipleResourcesFound,
    OperationOutcome,
    ResourceNotFound,
)

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"

BASE = os.environ["FHIR_BASE"]
TOKEN = os.environ["FHIR_TOKEN"]
PATIENT_ID = os.environ["PATIENT_ID"]
NHS_NUMBER = os.environ["NHS_NUMBER"]
RESEARCH_TOKEN = os.environ["RESEARCH_TOKEN"]
PROJECT = os.environ["PROJECT"]

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__

checked = {}
statuses = []


def check_r4(response, *args, **kwargs):
    """A requests hook: every FHIR JSON body the gateway sends must parse as its R4 resource."""
    statuses.append(response.status_code)
    media = response.headers.get("content-type", "")
    if not response.content:
        return
    if not media.startswith("application/fhir+json"):
        raise AssertionError(f"{response.url}: {media} is not FHIR JSON")
    body = json.loads(response.content)
    resource_type = body["resourceType"]
    # Strict: unknown elements, wrong types and missing required elements are refused.
    construct_fhir_element(resource_type, body)
    checked[resource_type] = checked.get(resource_type, 0) + 1


def client(**extra_headers):
    return SyncFHIRClient(
        BASE,
        authorization=f"Bearer {TOKEN}",
        extra_headers=extra_headers or None,
        requests_config={"hooks": {"response": [check_r4]}},
    )


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def raises(exception, call):
    try:
        call()
    except exception as e:
        return e
    raise AssertionError(f"expected {exception.__name__}")


def main():
    fhir = client()

    statement = fhir.execute("metadata", method="get")
    expect(statement["fhirVersion"] == "4.0.1", statement["fhirVersion"])

    patients = fhir.resources("Patient").search(identifier=f"{NHS_SYSTEM}|{NHS_NUMBER}").fetch()
    expect([p.id for p in patients] == [PATIENT_ID], f"Patient by NHS number: {patients}")
    patient = fhir.get("Patient", PATIENT_ID)
    expect(patient["identifier"][0]["value"] == NHS_NUMBER, patient)

    # Create: five readings, one a month.
    created = []
    for month in range(1, 6):
        observation = fhir.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
            subject={"reference": f"Patient/{PATIENT_ID}"},
            effectiveDateTime=f"2025-0{month}-10T08:30:00Z",
            valueQuantity={"value": 60 + month, "unit": "/min"},
        )
        observation.save()
        expect(observation.id and observation["meta"]["versionId"] == "1", observation)
        created.append(observation)

    # Search, two a page: fhirpy follows the next links itself.
    before = checked.get("Bundle", 0)
    found = fhir.resources("Observation").search(patient=PATIENT_ID).limit(2).fetch_all()
    expect(sorted(o.id for o in found) == sorted(o.id for o in created), found)
    expect(checked["Bundle"] - before == 3, "five results at two a page is three pages")
    recent = (
        fhir.resources("Observation")
        .search(patient=PATIENT_ID, date__ge="2025-03-01", code=f"{LOINC}|8867-4")
        .fetch_all()
    )
    expect(len(recent) == 3, f"date and code filters: {len(recent)}")
    by_nhs = (
        fhir.resources("Observation")
        .search(**{"patient.identifier": f"{NHS_SYSTEM}|{NHS_NUMBER}"})
        .fetch_all()
    )
    expect(len(by_nhs) == 5, f"patient.identifier: {len(by_nhs)}")

    # Read, by id and through a reference.
    first = created[0]
    read = fhir.get("Observation", first.id)
    expect(read["valueQuantity"]["value"] == 61, read)
    expect(fhir.reference("Observation", first.id).to_resource().id == first.id, "reference")

    # Update with etags: If-Match names the version replaced.
    first["status"] = "amended"
    client(**{"If-Match": 'W/"1"'}).resource("Observation", **first).save()
    current = fhir.get("Observation", first.id)
    expect(current["status"] == "amended" and current["meta"]["versionId"] == "2", current)
    # A stale etag is refused (fhirpy reports 412 as MultipleResourcesFound).
    first["status"] = "corrected"
    stale = client(**{"If-Match": 'W/"1"'}).resource("Observation", **first)
    raises(MultipleResourcesFound, stale.save)
    expect(statuses[-1] == 412, statuses[-1])
    # No etag at all: 428.
    raises(OperationOutcome, first.save)
    expect(statuses[-1] == 428, statuses[-1])
    # fhirpy's refresh sends If-None-Match with the version it holds: 304, nothing changes.
    held = fhir.resource("Observation", **current)
    held.refresh()
    expect(statuses[-1] == 304 and held["status"] == "amended", statuses[-1])

    history = fhir.execute(f"Observation/{first.id}/_history", method="get")
    versions = [e["resource"]["meta"]["versionId"] for e in history["entry"]]
    expect(versions == ["2", "1"], versions)
    old = fhir.execute(f"Observation/{first.id}/_history/1", method="get")
    expect(old["status"] == "final", old)

    everything = fhir.reference("Patient", PATIENT_ID).execute("$everything", method="get")
    types = [e["resource"]["resourceType"] for e in everything["entry"]]
    expect(types == ["Patient"] + ["Observation"] * 5, types)

    # Errors come back as OperationOutcome (which the hook checks too).
    raises(ResourceNotFound, lambda: fhir.get("Observation", str(uuid.uuid4())))
    expect(statuses[-1] == 404, statuses[-1])
    created[-1].delete()
    expect(statuses[-1] == 204, statuses[-1])
    raises(ResourceNotFound, lambda: fhir.get("Observation", created[-1].id))
    expect(statuses[-1] == 410, statuses[-1])

    bulk_export()

    for required in ["CapabilityStatement", "Patient", "Observation", "Bundle", "OperationOutcome"]:
        expect(checked.get(required, 0) > 0, f"no {required} was checked")
    print(f"fhirpy peer: every expectation met; R4 resources checked: {json.dumps(checked)}")


def bulk_export():
    """A Bulk Data export with plain requests (fhirpy has no Bulk Data client): every NDJSON line
    must be an R4 resource too."""
    research = requests.Session()
    research.headers.update(
        {
            "authorization": f"Bearer {RESEARCH_TOKEN}",
            "x-purpose-of-use": "HRESCH",
            "x-legal-basis": "section-251-support",
        }
    )
    research.hooks["response"].append(check_r4)
    kick_off = research.get(
        f"{BASE}/Group/{PROJECT}/$export", headers={"prefer": "respond-async"}
    )
    expect(kick_off.status_code == 202, kick_off.text)
    status_url = kick_off.headers["content-location"]
    for _ in range(600):
        status = requests.get(status_url, headers={"authorization": f"Bearer {RESEARCH_TOKEN}"})
        if status.status_code == 200:
            break
        expect(status.status_code == 202 and int(status.headers["retry-after"]) >= 1, status.text)
        time.sleep(0.1)
    manifest = status.json()
    lines = 0
    for output in manifest["output"]:
        ndjson = requests.get(
            output["url"], headers={"authorization": f"Bearer {RESEARCH_TOKEN}"}
        )
        expect(ndjson.headers["content-type"] == "application/fhir+ndjson", ndjson.headers)
        for line in ndjson.text.splitlines():
            resource = json.loads(line)
            construct_fhir_element(resource["resourceType"], resource)
            checked["exported " + resource["resourceType"]] = (
                checked.get("exported " + resource["resourceType"], 0) + 1
            )
            lines += 1
        expect(lines > 0 and output["count"] > 0, output)
    expect(lines >= 4, f"exported {lines}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure is the peer's verdict
        print(f"fhirpy peer: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
