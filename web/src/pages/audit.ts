// The audit view: the latest signed tree head, its Ed25519 signature checked in the browser with the
// key its key_id names, and any entry's inclusion proof checked against that head's root.

import { AuditAction, AuditOutcome } from "../gen/carerecord/access/v1/access_pb";
import { access, describe, SessionEnded } from "../api";
import { checkHead, checkInclusion, type Check } from "../verify";
import { errorSummary, h, hex, summaryList, when, replace } from "../ui";
import { organisation } from "../words";

function checkList(checks: Check[]): HTMLElement {
  return h(
    "ul",
    { class: "nhsuk-list" },
    ...checks.map((c) => h("li", { class: c.ok ? "app-check--ok" : "app-check--failed" }, c.text)),
  );
}

function verdict(checks: Check[], what: string): HTMLElement {
  const ok = checks.every((c) => c.ok);
  return h(
    "div",
    { class: ok ? "nhsuk-card nhsuk-card--feature" : "nhsuk-error-summary", role: "status", "aria-live": "polite" },
    h(
      "div",
      { class: ok ? "nhsuk-card__content nhsuk-card__content--feature" : "" },
      h("h2", { class: ok ? "nhsuk-card__heading nhsuk-card__heading--feature" : "nhsuk-error-summary__title" }, ok ? `Verified: ${what}` : `Verification failed: ${what}`),
      checkList(checks),
    ),
  );
}

export async function auditPage(main: HTMLElement, requestedIndex?: bigint): Promise<void> {
  const head = (await access.getSignedTreeHead({ treeSize: 0n })).treeHead;
  if (!head) throw new Error("no tree head");
  const key = (await access.getAuditPublicKey({ keyId: head.keyId })).key;
  const headChecks = key ? await checkHead(head, key) : [{ ok: false, text: "The signing key was not found." }];
  const index = requestedIndex ?? (head.treeSize > 0n ? head.treeSize - 1n : 0n);
  const entryResult = h("div", { id: "entry-result" });
  const input = h("input", {
    class: "nhsuk-input nhsuk-input--width-10",
    id: "leaf-index",
    name: "leaf-index",
    type: "text",
    inputmode: "numeric",
    value: String(index),
    "aria-describedby": "leaf-index-hint",
  }) as HTMLInputElement;
  const form = h(
    "form",
    { novalidate: true },
    h(
      "div",
      { class: "nhsuk-form-group" },
      h("label", { class: "nhsuk-label nhsuk-label--s", for: "leaf-index" }, "Entry to check"),
      h("div", { class: "nhsuk-hint", id: "leaf-index-hint" }, `An entry's index, from 0 to ${head.treeSize - 1n}. Every response of the front door names the index of the entry that recorded it.`),
      input,
    ),
    h("button", { class: "nhsuk-button", type: "submit" }, "Check entry"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    checkEntry(input.value.trim(), head.treeSize, entryResult).catch(() => {});
  });
  replace(main, 
    h("h1", { tabindex: "-1" }, "Audit log"),
    h("p", { class: "nhsuk-body-l" }, "Every access to a record is logged in an append-only log. This page checks the log's signed summary and an entry's proof here, in your browser, without trusting the server's word."),
    h("h2", {}, "Signed tree head"),
    summaryList([
      ["Log", head.logId],
      ["Entries", String(head.treeSize)],
      ["Root hash", h("span", { class: "app-hash" }, hex(head.rootHash))],
      ["Signed", when(head.timestamp)],
      ["Key", h("span", { class: "app-hash" }, head.keyId)],
    ]),
    verdict(headChecks, "the tree head's signature"),
    h("h2", {}, "Check an entry"),
    form,
    entryResult,
  );
  if (head.treeSize > 0n) await checkEntry(String(index), head.treeSize, entryResult);
}

async function checkEntry(raw: string, treeSize: bigint, out: HTMLElement): Promise<void> {
  out.replaceChildren();
  if (!/^\d{1,15}$/.test(raw) || BigInt(raw) >= treeSize) {
    out.append(errorSummary("There is a problem", [{ text: `Enter a whole number from 0 to ${treeSize - 1n}`, href: "#leaf-index" }]));
    return;
  }
  const index = BigInt(raw);
  try {
    const proof = await access.getInclusionProof({ leafIndex: index, treeSize: 0n });
    const head = proof.treeHead;
    const listed = await access.listAuditEntries({ startIndex: index, treeSize: proof.treeSize, pageSize: 1 });
    const entry = listed.entries[0];
    if (!head || !entry || entry.index !== index) throw new Error("the entry was not returned");
    const key = (await access.getAuditPublicKey({ keyId: head.keyId })).key;
    const checks = [
      ...(key ? await checkHead(head, key) : [{ ok: false, text: "The signing key was not found." }]),
      ...(await checkInclusion(entry, head, proof.auditPath)),
    ];
    const leaf = entry.leaf;
    const r = leaf?.requester;
    out.append(
      verdict(checks, `entry ${index}`),
      summaryList([
        ["Entry", leaf?.entryId ?? ""],
        ["When", when(leaf?.time)],
        ["What", AuditAction[leaf?.action ?? 0]?.toLowerCase().replace(/_/g, " ") ?? ""],
        ["Outcome", AuditOutcome[leaf?.outcome ?? 0]?.toLowerCase() ?? ""],
        ["Who", `${r?.displayName || r?.userId || "unknown"} at ${organisation(r?.organisationOdsCode ?? "")}`],
        ["Patient", leaf?.patientId || "none"],
      ]),
    );
  } catch (error) {
    if (error instanceof SessionEnded) return;
    out.append(errorSummary("The entry could not be checked", [{ text: describe(error) }]));
  }
}
