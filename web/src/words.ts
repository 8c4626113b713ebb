// Plain words for codes: purposes, actions, data classes, organisations.

import { AuditAction, AuditOutcome, type Disclosure } from "./gen/carerecord/access/v1/access_pb";

/** Organisations of the demonstration data, by ODS code; any other is shown by its code. */
const ORGANISATIONS: Record<string, string> = {
  RR8: "Leeds Teaching Hospitals",
  B86001: "a Leeds GP practice",
  X26: "NHS England",
  PATIENT: "your own account",
};

export function organisation(code: string): string {
  if (!code) return "no organisation";
  return ORGANISATIONS[code] ? `${ORGANISATIONS[code]} (${code})` : `organisation ${code}`;
}

export const DATA_CLASSES: [string, string][] = [
  ["mental-health", "Mental health"],
  ["sexual-health", "Sexual health"],
  ["reproductive-health", "Reproductive health"],
  ["safeguarding", "Safeguarding"],
  ["genomic", "Genomic (genetic test results)"],
  ["substance-misuse", "Drug and alcohol use"],
  ["hiv", "HIV"],
];

export function dataClass(code: string): string {
  const found = DATA_CLASSES.find(([c]) => c === code);
  return found ? found[1].toLowerCase() : code;
}

const PURPOSES: Record<string, string> = {
  TREAT: "for your care",
  ETREAT: "in an emergency",
  PATRQT: "at your request",
  HRESCH: "for research",
  HOPERAT: "to plan services",
  HPAYMT: "for payment",
  PUBHLTH: "for public health",
  HMARKT: "for marketing",
};

export function purpose(code: string): string {
  return PURPOSES[code] ?? `for purpose ${code}`;
}

function records(n: bigint): string {
  return n === 1n ? "1 record" : `${n} records`;
}

/** What was done, e.g. "read your record". */
function deed(d: Disclosure): string {
  switch (d.action) {
    case AuditAction.FIND_PATIENT:
      return "looked up your details";
    case AuditAction.READ:
      return "read your record";
    case AuditAction.BREAK_GLASS_READ:
      return "used emergency access to read your record";
    case AuditAction.LIST_DISCLOSURES:
      return "looked at who has seen your record";
    case AuditAction.CREATE_RECORD:
    case AuditAction.IMPORT_RECORDS:
      return "added to your record";
    case AuditAction.UPDATE_RECORD:
      return "updated your record";
    case AuditAction.RETRACT_RECORD:
      return "marked part of your record as entered in error";
    case AuditAction.FOLLOW_RECORD_CHANGES:
      return "was told about changes to your record";
    default:
      return "accessed your record";
  }
}

/** Who, e.g. "Dr A. Example at Leeds Teaching Hospitals (RR8)" or "You". */
export function who(d: Disclosure, patientId: string): string {
  const r = d.requester;
  if (!r) return "Someone";
  if (!r.organisationOdsCode && d.patientId === patientId && d.purposeOfUse === "PATRQT") return "You";
  const name = r.displayName || r.userId || d.clientId || "Someone";
  return r.organisationOdsCode ? `${name} at ${organisation(r.organisationOdsCode)}` : name;
}

/** One line of "who saw my record", e.g. "Dr A at Leeds GP read your record for your care: 3 records". */
export function disclosureSentence(d: Disclosure, patientId: string): string {
  const person = who(d, patientId);
  const why = d.action === AuditAction.BREAK_GLASS_READ ? "in an emergency" : purpose(d.purposeOfUse);
  if (d.outcome === AuditOutcome.REFUSED) {
    return `${person} asked to see your record ${why}, and was refused. Nothing was shown.`;
  }
  if (d.outcome === AuditOutcome.FAILED) {
    return `${person} tried to access your record ${why}, but it did not work. Nothing was shown.`;
  }
  const counted =
    d.action === AuditAction.FIND_PATIENT || d.action === AuditAction.LIST_DISCLOSURES
      ? ""
      : `: ${records(d.returnedCount)}${d.withheldCount > 0n ? `, ${records(d.withheldCount)} not shown because of your choices or the rules` : ""}`;
  return `${person} ${deed(d)} ${why}${counted}.`;
}
