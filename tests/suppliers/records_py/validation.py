"""Validation rules of carerecord.records.v1, as records.proto states them. Pure functions.

Each check returns a list of (field, description) violations; an empty list means valid.
"""

import json
import re
import time

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
NIL_UUID = "00000000-0000-0000-0000-000000000000"
ODS_RE = re.compile(r"^[A-Z0-9]{3,10}$")
# A resource type name as a filter: well formed, not necessarily known.
RESOURCE_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{0,63}$")
FHIR_JSON = "application/fhir+json"
DATA_CLASSES = frozenset(
    ["mental-health", "sexual-health", "reproductive-health", "safeguarding", "genomic", "substance-misuse", "hiv"]
)
MAX_DEPTH = 64
FUTURE_SLACK_US = 5 * 60 * 1_000_000

# Every resource type of FHIR R4 (4.0.1).
FHIR_R4_TYPES = frozenset(
    """Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment AppointmentResponse AuditEvent Basic
    Binary BiologicallyDerivedProduct BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
    ChargeItemDefinition Claim ClaimResponse ClinicalImpression CodeSystem Communication CommunicationRequest
    CompartmentDefinition Composition ConceptMap Condition Consent Contract Coverage CoverageEligibilityRequest
    CoverageEligibilityResponse DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
    DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest
    EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable ExampleScenario ExplanationOfBenefit
    FamilyMemberHistory Flag Goal GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide InsurancePlan Invoice Library Linkage List
    Location Measure MeasureReport Media Medication MedicationAdministration MedicationDispense MedicationKnowledge
    MedicationRequest MedicationStatement MedicinalProduct MedicinalProductAuthorization
    MedicinalProductContraindication MedicinalProductIndication MedicinalProductIngredient
    MedicinalProductInteraction MedicinalProductManufactured MedicinalProductPackaged MedicinalProductPharmaceutical
    MedicinalProductUndesirableEffect MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder
    Observation ObservationDefinition OperationDefinition OperationOutcome Organization OrganizationAffiliation
    Parameters Patient PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole
    Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson RequestGroup ResearchDefinition
    ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule
    SearchParameter ServiceRequest Slot Specimen SpecimenDefinition StructureDefinition StructureMap Subscription
    Substance SubstanceNucleicAcid SubstancePolymer SubstanceProtein SubstanceReferenceInformation
    SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest Task TerminologyCapabilities
    TestReport TestScript ValueSet VerificationResult VisionPrescription""".split()
)
REFUSED_TYPES = frozenset(["Patient", "Bundle"])


def now_us() -> int:
    return time.time_ns() // 1000


def is_uuid(value: str) -> bool:
    return bool(UUID_RE.match(value)) and value.lower() != NIL_UUID


def uuid_violation(field: str, value: str, required: bool = True):
    if not value:
        return [(field, "required")] if required else []
    if not is_uuid(value):
        return [(field, "must be a UUID in the 36-character hyphenated form, not the nil UUID")]
    return []


def data_class_violations(prefix: str, classes) -> list:
    return [
        (f"{prefix}[{i}]", f"unknown data class {c!r}; expected one of {', '.join(sorted(DATA_CLASSES))}")
        for i, c in enumerate(classes)
        if c not in DATA_CLASSES
    ]


def resource_type_filter_violations(field: str, types) -> list:
    if len(types) > 50:
        return [(field, f"at most 50 resource types, got {len(types)}")]
    return [(f"{field}[{i}]", "not a FHIR resource type name") for i, t in enumerate(types) if not RESOURCE_TYPE_RE.match(t)]


def resource_type_violations(field: str, value: str, allow=None) -> list:
    if not value:
        return [(field, "required")]
    if value in REFUSED_TYPES:
        return [(field, f"{value} is refused: one clinical resource per record; demographics belong to identity")]
    if value not in FHIR_R4_TYPES:
        return [(field, f"{value!r} is not a FHIR R4 resource type (case-sensitive)")]
    if allow is not None and value not in allow:
        return [(field, f"{value} is not allowed by this deployment")]
    return []


class _Duplicate(Exception):
    pass


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _Duplicate(key)
        seen[key] = value
    return seen


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _depth(value) -> int:
    """Nesting depth: a scalar is 0, an object or array is 1 + its deepest member."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in node)
    return deepest


def parse_payload(payload: bytes, limit: int):
    """Rules 1 and 2: size, UTF-8 JSON, no duplicates, depth, an object. Returns (value, violations)."""
    field = "record.payload"
    if not payload:
        return None, [(field, "required")]
    if len(payload) > limit:
        return None, [(field, f"payload is {len(payload)} bytes; the limit is {limit} bytes")]
    if payload.startswith(b"\xef\xbb\xbf"):
        return None, [(field, "must not begin with a byte order mark")]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, [(field, f"not UTF-8: {e.reason} at byte {e.start}")]
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _Duplicate as e:
        return None, [(field, f"duplicate member name {e.args[0]!r}")]
    except RecursionError:
        return None, [(field, f"nested deeper than {MAX_DEPTH}")]
    except ValueError as e:
        return None, [(field, f"not JSON: {e}")]
    if not isinstance(value, dict):
        return None, [(field, "the top-level value must be an object")]
    if _depth(value) > MAX_DEPTH:
        return None, [(field, f"nested deeper than {MAX_DEPTH}")]
    return value, []


def check_payload_against(value: dict, resource_type: str, patient_id: str, bases) -> list:
    """Rules 3 and 4: resourceType and the patient reference. patient_id is lower case."""
    field = "record.payload"
    out = []
    rt = value.get("resourceType")
    if not isinstance(rt, str):
        out.append((field, "/resourceType: required, a string"))
    elif rt != resource_type:
        out.append((field, f"/resourceType: expected {resource_type}, got {rt}"))
    present = [name for name in ("subject", "patient") if name in value]
    if not present:
        out.append((field, "a `subject` or `patient` element referencing the patient is required"))
    for name in present:
        element = value[name]
        items = list(enumerate(element)) if isinstance(element, list) else [(None, element)]
        if isinstance(element, list) and not element:
            out.append((field, f"/{name}: must reference the patient"))
        for i, ref in items:
            pointer = f"/{name}" if i is None else f"/{name}/{i}"
            problem = _reference_problem(ref, patient_id, bases)
            if problem:
                out.append((field, f"{pointer}{problem[0]}: {problem[1]}"))
    return out


def _reference_problem(ref, patient_id: str, bases):
    if not isinstance(ref, dict):
        return ("", "must be a Reference object")
    if "type" in ref and ref["type"] != "Patient":
        return ("/type", "must be Patient")
    reference = ref.get("reference")
    if not isinstance(reference, str):
        return ("/reference", f"expected Patient/{patient_id} (identifier-only references are refused)")
    target = None
    if reference.startswith("Patient/"):
        target = reference[len("Patient/"):]
    elif reference.startswith("urn:uuid:"):
        target = reference[len("urn:uuid:"):]
    else:
        for base in bases:
            prefix = base.rstrip("/") + "/Patient/"
            if reference.startswith(prefix):
                target = reference[len(prefix):]
                break
    if target is None or target.lower() != patient_id:
        return ("/reference", f"expected Patient/{patient_id}")
    return None


def record_input_violations(record, has_record: bool, limit: int, bases, allow=None):
    """Every rule of a new Record (CreateRecord and import items). Returns (violations, parsed payload)."""
    if not has_record:
        return [("record", "required")], None
    out = []
    out += uuid_violation("record.patient_id", record.patient_id)
    out += resource_type_violations("record.resource_type", record.resource_type, allow)
    out += content_violations(record, limit)
    value, payload_problems = parse_payload(record.payload, limit)
    out += payload_problems
    if value is not None and not any(f in ("record.patient_id", "record.resource_type") for f, _ in out):
        out += check_payload_against(value, record.resource_type, record.patient_id.lower(), bases)
    out += metadata_violations(record, ["data_classes", "authoring_organisation_ods_code", "author", "source_system"])
    if record.HasField("recorded_time"):
        t = record.recorded_time.seconds * 1_000_000 + record.recorded_time.nanos // 1000
        if t > now_us() + FUTURE_SLACK_US:
            out.append(("record.recorded_time", "more than 5 minutes after the server's current time"))
    return out, value


def content_violations(record, limit: int) -> list:
    if record.content_type != FHIR_JSON:
        return [("record.content_type", f"must be exactly {FHIR_JSON}")]
    return []


def metadata_violations(record, paths) -> list:
    out = []
    if "data_classes" in paths:
        out += data_class_violations("record.data_classes", record.data_classes)
    if "authoring_organisation_ods_code" in paths:
        ods = record.authoring_organisation_ods_code.upper()
        if not ods:
            out.append(("record.authoring_organisation_ods_code", "required"))
        elif not ODS_RE.match(ods):
            out.append(("record.authoring_organisation_ods_code", "3 to 10 letters and digits"))
    if "author" in paths and len(record.author) > 256:
        out.append(("record.author", "at most 256 characters"))
    if "source_system" in paths:
        if not record.source_system:
            out.append(("record.source_system", "required"))
        elif len(record.source_system) > 256:
            out.append(("record.source_system", "at most 256 characters"))
    return out


# -- ListRecords filters on the payload (codes, categories, statuses) --------------------------

MAX_TOKENS = 50
MAX_STATUSES = 20
MAX_TOKEN_CHARS = 512


def _filter_value_problem(value: str):
    if not value:
        return "must not be empty"
    if len(value) > MAX_TOKEN_CHARS:
        return f"at most {MAX_TOKEN_CHARS} characters"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        return "must not contain control characters"
    return None


def token_filter_violations(field: str, values, limit: int = MAX_TOKENS) -> list:
    """`system|code`, `code`, `|code` or `system|` values; too many -> a violation on the list."""
    if len(values) > limit:
        return [(field, f"at most {limit} values, got {len(values)}")]
    violations = []
    for i, value in enumerate(values):
        problem = _filter_value_problem(value)
        if problem is None and field != "statuses" and value == "|":
            problem = "expected system|code, |code, system| or code"
        if problem:
            violations.append((f"{field}[{i}]", problem))
    return violations


def _codings(concept):
    """(system, code) pairs of a CodeableConcept; a plain string is a code without system."""
    if isinstance(concept, str):
        return [(None, concept)]
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return []
    pairs = []
    for coding in concept["coding"]:
        if not isinstance(coding, dict) or not isinstance(coding.get("code"), str) or not coding["code"]:
            continue
        system = coding.get("system") if isinstance(coding.get("system"), str) else None
        if any(ch in (system or "") + coding["code"] for ch in "\t\n\r"):
            continue
        pairs.append((system, coding["code"]))
    return pairs


def payload_terms(payload: bytes):
    """The codings of the top-level code and category, and the top-level status string."""
    try:
        value = json.loads(payload)
    except ValueError:
        return [], [], None
    if not isinstance(value, dict):
        return [], [], None
    codes = _codings(value.get("code"))
    category = value.get("category")
    categories = []
    for concept in category if isinstance(category, list) else [category]:
        categories += _codings(concept)
    status = value.get("status") if isinstance(value.get("status"), str) else None
    return codes, categories, status


def token_matches(token: str, codings) -> bool:
    if "|" not in token:
        return any(code == token for _, code in codings)
    system, code = token.split("|", 1)
    for s, c in codings:
        s = s or ""
        if s == system and (code == "" or c == code):
            return True
    return False
